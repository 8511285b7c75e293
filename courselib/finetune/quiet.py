"""Keep the libraries' notices off stderr while a model loads or trains (Lab 04).

A notebook shows stderr in red, and nbgrader scores a test cell with any stderr 0. What
loading, wrapping and training a model would print, and why it may go:

- bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" on CPUs with
  AVX512-BF16: peft and transformers' Trainer import bitsandbytes whenever it is installed, so
  it is imported first through :func:`courselib.nf4.require_bitsandbytes`, which drops
  that one message (its own CPU kernel is used; the hub kernel would be a download);
- transformers' "Loading weights" bar and its load-time notices: a load is seconds here;
- transformers 5.24 renamed gradient checkpointing to activation checkpointing and warns
  (FutureWarning) on the old names, which peft 0.21 calls in every ``get_peft_model`` and
  ``prepare_model_for_kbit_training``: about library code, nothing a student can change.
  The course calls the old name too: it is the one every transformers 5 release has.

Errors still raise, and the training progress bar (tqdm) is left alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from courselib.errors import MissingDependencyError, require
from courselib.nf4 import require_bitsandbytes


def import_bitsandbytes_quietly() -> None:
    """Import bitsandbytes without its kernel-hub warning, if it is installed (LoRA and full
    fine-tuning work without it)."""
    with suppress(MissingDependencyError):
        require_bitsandbytes()


@contextmanager
def quiet() -> Iterator[None]:
    """Within: transformers logs errors only and shows no loading bar; the deprecation
    warnings above are dropped. The previous settings come back afterwards."""
    import_bitsandbytes_quietly()
    transformers = require("transformers", extra="models")
    logging = transformers.utils.logging
    verbosity, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            for old_name in ("is_gradient_checkpointing", "gradient_checkpointing_enable"):
                warnings.filterwarnings(
                    "ignore", message=f"`{old_name}` is deprecated", category=FutureWarning
                )
            yield
    finally:
        logging.set_verbosity(verbosity)
        if bar:
            logging.enable_progress_bar()

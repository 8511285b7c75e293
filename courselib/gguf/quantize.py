"""Quantize a GGUF with llama.cpp's own quantizer, through llama-cpp-python (Lab 01).

Example::

    quantize_gguf(Path("m-F32.gguf"), Path("m-Q4_K_M.gguf"), quant="Q4_K_M")

K-quants (Q4_K_M ...) need weight rows that are multiples of 256; llama.cpp falls back to
another type for other rows (the course models' shapes avoid that).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from courselib.atomic import atomic_path
from courselib.errors import CourseError, require
from courselib.gguf.types import file_type_id

QuantName = Literal[
    "F32",
    "F16",
    "Q4_0",
    "Q8_0",
    "Q6_K",
    "Q5_K_M",
    "Q5_K_S",
    "Q4_K_M",
    "Q4_K_S",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "Q2_K",
    "IQ4_XS",
    "IQ4_NL",
    "IQ3_M",
    "IQ3_S",
]
"""File types llama.cpp makes without an importance matrix (the course's and the plan's)."""


@contextmanager
def _capture_stderr():
    """Redirect the C library's stderr (fd 2) to a temp file; yields a reader of its text."""
    with tempfile.TemporaryFile(mode="w+b") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield lambda: (log.seek(0), log.read().decode("utf-8", "replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quantize_gguf(src: Path, dst: Path, *, quant: QuantName, threads: int | None = None) -> Path:
    """Quantize ``src`` (an F32/F16 GGUF) to ``dst`` with type ``quant``; returns ``dst``."""
    llama_cpp = require("llama_cpp", package="llama-cpp-python", extra="models")
    src, dst = Path(src), Path(dst)
    ftype = file_type_id(quant)  # a CourseError naming the known types for a typo
    if not src.is_file():
        raise CourseError(f"GGUF file {src} does not exist.", hint="Convert the checkpoint first.")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    if threads:
        params.nthread = threads
    with atomic_path(dst) as tmp, _capture_stderr() as log:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if status != 0 or not tmp.is_file():
            tail = "\n".join(log().strip().splitlines()[-5:])
            raise CourseError(
                f"llama.cpp could not quantize {src.name} to {quant} (status {status}).\n{tail}",
                hint="Check that the input is a valid F32/F16 GGUF with enough free disk space.",
            )
    return dst

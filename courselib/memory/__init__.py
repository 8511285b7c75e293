"""The memory estimator of Lab 03: how many bytes a model needs, and why.

Light on purpose (no torch, no transformers at import): the chat backends call
:func:`check_fits` before loading a model, and the class server's preflight uses
:func:`estimate_load_bytes` to refuse a model that does not fit its GPU.

- :mod:`~courselib.memory.configs`      model shapes: shipped configs, checkpoints, GGUF headers
  (GGUF headers and llama.cpp's per-tensor types live in :mod:`courselib.gguf`)
- :mod:`~courselib.memory.params`       exact parameter counts
- :mod:`~courselib.memory.precision`    bits per weight of every storage format
- :mod:`~courselib.memory.weights`      bytes of the weights at a precision
- :mod:`~courselib.memory.kv`           KV cache
- :mod:`~courselib.memory.estimate`     inference totals (weights + KV + engine buffers)
- :mod:`~courselib.memory.activations`  what autograd keeps for the backward pass
- :mod:`~courselib.memory.training`     full fine-tune, LoRA, QLoRA
- :mod:`~courselib.memory.preflight`    "will it fit?" before loading
- :mod:`~courselib.memory.table`, :mod:`~courselib.memory.plot`  pandas tables, stacked chart
- :mod:`~courselib.memory.cli`          ``python -m courselib memory``

Measurements and the tables that set them beside these estimates are in
:mod:`courselib.measure` (it imports this package, never the reverse).

Example::

    >>> from courselib.memory import count_params, load_config
    >>> count_params(load_config("llama-13b")).total
    13015864320
"""

from courselib.memory.configs import load_config, shape_of, shipped_models
from courselib.memory.estimate import Estimate, estimate_inference
from courselib.memory.kv import kv_cache_bytes
from courselib.memory.params import count_params
from courselib.memory.precision import bits_per_weight, bytes_per_param
from courselib.memory.preflight import check_fits, estimate_load_bytes
from courselib.memory.weights import weight_bytes

__all__ = [
    "Estimate",
    "bits_per_weight",
    "bytes_per_param",
    "check_fits",
    "count_params",
    "estimate_inference",
    "estimate_load_bytes",
    "kv_cache_bytes",
    "load_config",
    "shape_of",
    "shipped_models",
    "weight_bytes",
]

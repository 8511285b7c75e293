"""GGUF's two kinds of type, and what each costs (Labs 01 and 03, the build, the estimator).

- A **ggml tensor type** is how one tensor is stored: Q4_0 keeps 32 weights in 18 bytes
  (4.5 bits), Q4_K 256 in 144 (4.5), Q6_K 6.5625 bits, Q8_0 8.5, F16 16 (``gguf.GGML_QUANT_SIZES``).
- A **file type** (``general.file_type``, llama.cpp's ``llama_ftype``, the ``gguf`` package's
  ``LlamaFileType``) names a whole file's recipe: Q4_K_M stores most matrices in Q4_K and some
  in Q6_K (:mod:`courselib.gguf.mix`). The numbers are llama.h's: F32 0, F16 1, Q4_0 2,
  Q8_0 7, Q4_K_M 15 (docs/facts.md#llama-ftypes).

Example::

    >>> FILE_TYPES["Q4_K_M"], ggml_tensor_bytes("Q4_0", 64), file_type_id("Q4_K_M")
    ('Q4_K', 36, 15)
"""

from __future__ import annotations

from functools import cache

from courselib.errors import CourseError, require

FILE_TYPES = {
    "F32": "F32",
    "F16": "F16",
    "BF16": "BF16",
    "Q8_0": "Q8_0",
    "Q6_K": "Q6_K",
    "Q5_K_M": "Q5_K",
    "Q5_K_S": "Q5_K",
    "Q5_1": "Q5_1",
    "Q5_0": "Q5_0",
    "Q4_K_M": "Q4_K",
    "Q4_K_S": "Q4_K",
    "Q4_1": "Q4_1",
    "Q4_0": "Q4_0",
    "Q3_K_L": "Q3_K",
    "Q3_K_M": "Q3_K",
    "Q3_K_S": "Q3_K",
    "Q2_K": "Q2_K",
    "Q2_K_S": "Q2_K",
    "IQ4_NL": "IQ4_NL",
    "IQ4_XS": "IQ4_XS",
    "IQ3_M": "IQ3_S",
    "IQ3_S": "IQ3_S",
    "IQ3_XS": "IQ3_S",
    "IQ3_XXS": "IQ3_XXS",
    "IQ2_M": "IQ2_S",
    "IQ2_S": "IQ2_XS",
    "IQ2_XS": "IQ2_XS",
    "IQ2_XXS": "IQ2_XXS",
    "IQ1_M": "IQ1_M",
    "IQ1_S": "IQ1_S",
}
"""GGUF file types whose per-tensor mix the course replays -> their ordinary tensors' type
(llama.cpp's ``llama_ftype_get_default_type``: IQ2_S files are mostly IQ2_XS, IQ3_M IQ3_S)."""

NEEDS_IMATRIX = frozenset(
    {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"}
)
"""File types llama.cpp's quantizer refuses to make without an importance matrix."""

# ggml block sizes (weights per block, bytes per block), used only when the gguf package is
# missing (the memory estimator runs on the base install); tests check this copy against
# gguf.GGML_QUANT_SIZES.
_GGML_FALLBACK = {
    "F32": (1, 4),
    "F16": (1, 2),
    "BF16": (1, 2),
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q5_0": (32, 22),
    "Q5_1": (32, 24),
    "Q8_0": (32, 34),
    "Q2_K": (256, 84),
    "Q3_K": (256, 110),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
    "IQ4_NL": (32, 18),
    "IQ4_XS": (256, 136),
    "IQ3_S": (256, 110),
    "IQ3_XXS": (256, 98),
    "IQ2_S": (256, 82),
    "IQ2_XS": (256, 74),
    "IQ2_XXS": (256, 66),
    "IQ1_M": (256, 56),
    "IQ1_S": (256, 50),
}


@cache
def ggml_block_sizes() -> dict[str, tuple[int, int]]:
    """ggml tensor type -> (weights per block, bytes per block), from the gguf package."""
    try:
        import gguf
    except ImportError:
        return dict(_GGML_FALLBACK)
    return {t.name: sizes for t, sizes in gguf.GGML_QUANT_SIZES.items()}


def ggml_tensor_bytes(ggml_type: str, numel: int) -> int:
    """Bytes of a tensor of ``numel`` weights stored as ggml type ``ggml_type`` (e.g. "Q6_K")."""
    block, size = ggml_block_sizes()[ggml_type.upper()]
    return -(-numel // block) * size


def _file_types() -> dict[str, int]:
    """'Q4_K_M' -> 15 ... from gguf.LlamaFileType ('MOSTLY_Q4_K_M', 'ALL_F32')."""
    gguf = require("gguf", extra="models")
    return {
        m.name.removeprefix("MOSTLY_").removeprefix("ALL_"): int(m.value)
        for m in gguf.LlamaFileType
        if m.name != "GUESSED"
    }


def file_type_id(name: str) -> int:
    """llama_ftype number of a file type name: 'Q4_K_M' -> 15, 'F32' -> 0."""
    ids = _file_types()
    if name.upper() not in ids:
        raise CourseError(
            f"Unknown GGUF file type {name!r}.", hint=f"Choose one of {', '.join(ids)}."
        )
    return ids[name.upper()]


def file_type_name(ftype: int | None) -> str:
    """File type name of a ``general.file_type`` number: 15 -> 'Q4_K_M' (None -> 'unknown')."""
    if ftype is None:
        return "unknown"
    names = {v: k for k, v in _file_types().items()}
    return names.get(int(ftype), f"ftype {ftype}")

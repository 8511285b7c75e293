"""What is inside a GGUF file: parameters, tensor bytes, bits per weight, types (Lab 01, CLI).

Example::

    >>> info = gguf_info(Path("course-chat-Q4_K_M.gguf"))
    >>> info.params, round(info.bits_per_weight, 2), info.tensor_types    # doctest: +SKIP
    (3700000, 5.1, {'Q4_K': 26, 'Q6_K': 3, 'F32': 9})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from courselib.errors import CourseError, require

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    file_bytes: int
    tensor_bytes: int
    """Bytes of tensor data (weights and quantization scales), without metadata."""
    params: int
    tensor_types: dict[str, int]
    """How many tensors of each GGML type (a 'Q4_K_M' file mixes Q4_K, Q6_K and F32)."""
    metadata: dict[str, object]
    """Scalar metadata (architecture, context length, block count ...)."""

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.tensor_bytes / self.params if self.params else 0.0


def check_gguf_magic(path: Path) -> None:
    """Raise a CourseError unless ``path`` is an existing file starting with b'GGUF'."""
    path = Path(path)
    if not path.is_file():
        raise CourseError(
            f"Model file {path} does not exist.", hint="Check the path, or build the course models."
        )
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise CourseError(
            f"{path} is not a GGUF model file (it starts with {magic!r}, not b'GGUF').",
            hint="llama.cpp reads .gguf files: convert an HF checkpoint with "
            "`python -m courselib models convert DIR`.",
        )


def gguf_info(path: Path) -> GGUFInfo:
    """Read a GGUF header (tensor data is memory-mapped, not read)."""
    check_gguf_magic(path)
    gguf = require("gguf", extra="models")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise CourseError(
            f"{path} is a damaged GGUF file ({exc}).", hint="Rebuild or copy it again."
        ) from None
    types = Counter(t.tensor_type.name for t in reader.tensors)
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml.") or key.startswith("GGUF."):
            continue
        try:
            metadata[key] = field.contents()
        except Exception:  # exotic field types are not needed for the summary
            continue
    return GGUFInfo(
        path=Path(path),
        file_bytes=Path(path).stat().st_size,
        tensor_bytes=int(sum(int(t.n_bytes) for t in reader.tensors)),
        params=int(sum(int(t.n_elements) for t in reader.tensors)),
        tensor_types=dict(types),
        metadata=metadata,
    )

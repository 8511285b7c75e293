"""The offline course models: build, convert (HF -> GGUF), quantize, find (every lab).

Light at import time; torch, transformers, gguf and llama_cpp load inside the functions.

Example::

    from courselib.models import gguf_file, hf_dir, resolve_model_ref
    gguf_file("course-chat", "Q4_K_M")       # Path to the 4-bit GGUF
    resolve_model_ref("course-chat:hf")      # Path to the HF checkpoint folder
"""

from courselib.models.specs import COURSE_MODELS, QUANTS, ModelSpec
from courselib.models.store import gguf_file, hf_dir, model_root, read_manifest, resolve_model_ref

__all__ = [
    "COURSE_MODELS",
    "QUANTS",
    "ModelSpec",
    "gguf_file",
    "hf_dir",
    "model_root",
    "read_manifest",
    "resolve_model_ref",
]

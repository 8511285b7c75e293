"""Inference backends behind one interface (see base.py), opened from one string (Lab 01-02).

:func:`open_backend` picks the engine from what you give it; the backend modules (and torch,
llama_cpp, openai) are imported only when one is opened, so ``import courselib`` stays light.

Example::

    >>> backend = open_backend("course-chat", n_ctx=512)      # the course's Q4_K_M GGUF
    >>> backend.name
    'llama.cpp course-chat-Q4_K_M.gguf'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from courselib.backends.base import Backend, GenerationConfig, Message

if TYPE_CHECKING:
    from courselib.chat.template import ChatTemplate, TemplateChoice

__all__ = ["Backend", "GenerationConfig", "Message", "open_backend"]

Dtype = Literal["fp32", "fp16", "nf4"]


def open_backend(
    ref: str,
    *,
    n_ctx: int | None = None,
    threads: int | None = None,
    dtype: Dtype = "fp32",
    api_key: str | None = None,
    model: str | None = None,
    template: ChatTemplate | TemplateChoice | None = None,
) -> Backend:
    """Open the backend ``ref`` names.

    - ``"echo"``: :class:`~courselib.backends.echo.EchoBackend` (offline UI tests).
    - ``"http://..."`` / ``"https://..."``: an OpenAI-compatible server (``api_key``, ``model``;
      ``n_ctx`` is used only when the server does not say its context size).
    - a ``.gguf`` file, or a course model ref (``"course-chat"``, ``"course-chat:Q8_0"``):
      llama.cpp with ``n_ctx`` (default: the model's trained context) and ``threads``.
    - a Hugging Face checkpoint folder, or ``"course-chat:hf"``: transformers at ``dtype``.

    ``template`` chooses the chat template of local models: ``None``/"auto" (the model's own,
    else Vicuna v1.1), "model", "vicuna" or a :class:`~courselib.chat.template.ChatTemplate`.

    Example: ``open_backend("http://127.0.0.1:8000/v1", api_key="sk-...")``.
    """
    if ref == "echo":
        from courselib.backends.echo import EchoBackend

        return EchoBackend(context_size=n_ctx or 2048)
    if ref.startswith(("http://", "https://")):
        from courselib.backends.openai_remote import OpenAIBackend

        return OpenAIBackend(ref, api_key=api_key, model=model, context_size=n_ctx)
    path = _local_path(ref)
    if path.is_dir():
        from courselib.backends.transformers_hf import TransformersBackend

        return TransformersBackend(
            path, dtype=dtype, n_ctx=n_ctx, threads=threads, template=template
        )
    from courselib.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(path, n_ctx=n_ctx, threads=threads, template=template)


def _local_path(ref: str) -> Path:
    """A path as given, or the built course model a ref such as 'course-chat:Q8_0' names."""
    path = Path(ref).expanduser()
    if path.exists() or path.suffix == ".gguf" or "/" in ref or "\\" in ref:
        return path  # a missing file is reported by the backend that would load it
    from courselib.models import resolve_model_ref

    return Path(resolve_model_ref(ref))

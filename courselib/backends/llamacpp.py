"""A GGUF model through llama-cpp-python: the local 4-bit chat of Lab 01.

The prompt is rendered here (the model's own Jinja template, else Vicuna v1.1) and tokenized
with the model's tokenizer, and llama.cpp gets the token ids: the system prompt always reaches
the model, the token count the conversation is trimmed by is exact, and a prompt longer than
the context is caught before llama.cpp sees it.

Before loading, the file is checked: it exists, starts with the GGUF magic bytes, and its
weights plus KV cache fit the free RAM (``courselib.memory.preflight.check_fits``).

Example::

    >>> backend = LlamaCppBackend(gguf_file("course-chat", "Q4_K_M"), n_ctx=512)
    >>> backend.complete([Message("user", "What is the capital of France?")],
    ...                  config=GenerationConfig(temperature=0))
    'The capital of France is Paris.'
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from courselib import settings
from courselib.backends.base import Backend, GenerationConfig, Message
from courselib.backends.stops import StopFilter
from courselib.chat.template import resolve_template
from courselib.errors import CourseError, require

if TYPE_CHECKING:
    from courselib.chat.template import ChatTemplate, TemplateChoice

DEFAULT_MAX_CTX = 4096
"""Default n_ctx is the model's trained context, capped here: the KV cache grows with it."""


class LlamaCppBackend(Backend):
    """A GGUF file in llama.cpp on the CPU, ``threads`` threads, ``n_ctx`` tokens of context."""

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int | None = None,
        threads: int | None = None,
        template: ChatTemplate | TemplateChoice | None = None,
        use_mmap: bool = True,
        seed: int | None = None,
    ) -> None:
        from courselib.gguf.read import read_gguf
        from courselib.gguf.runtime import load_llama
        from courselib.memory.preflight import check_fits

        info = read_gguf(path)  # the header, read once: a bad file is a CourseError here
        path = info.path
        n_ctx = n_ctx or min(info.config["max_position_embeddings"], DEFAULT_MAX_CTX)
        check_fits(info, n_ctx=n_ctx, where="RAM")

        llama_cpp = require("llama_cpp", package="llama-cpp-python", extra="models")
        threads = settings.resolve("threads", threads)
        # a llama.cpp that would die with SIGILL here is a CourseError, not a dead kernel
        self.llm = load_llama(
            path,
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            use_mmap=use_mmap,
            seed=llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed,
        )
        self.path = path
        self.context_size = self.llm.n_ctx()
        self.name = f"llama.cpp {path.name}"
        vocab = self.llm._model  # token texts are only on the model object
        self.bos_token = (
            vocab.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
        )
        eos_id = self.llm.token_eos()
        self.template = resolve_template(
            template,
            model_template=self.llm.metadata.get("tokenizer.chat_template"),
            bos_token=self.bos_token,
            eos_token=vocab.token_get_text(eos_id) if eos_id >= 0 else "",
        )

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt: BOS (unless the template wrote it) + the text.

        Special tokens in the text ('</s>' between Vicuna turns) become their ids, as in
        training.
        """
        add_bos = not (self.bos_token and prompt.startswith(self.bos_token))
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)

    def prompt_text(self, messages: Sequence[Message]) -> str:
        """The model's chat template rendered for ``messages``, without a BOS it writes."""
        return self.template.render(messages).removeprefix(self.bos_token)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact: the model's tokenizer on the rendered prompt (BOS included)."""
        return len(self.encode(self.template.render(messages)))

    def stream(
        self, messages: Sequence[Message], *, config: GenerationConfig
    ) -> Generator[str, None, None]:
        """Yield the reply as llama.cpp decodes it; llama.cpp runs in this generator, so closing
        it stops decoding at once."""
        ids = self.encode(self.template.render(messages))
        if len(ids) >= self.context_size:
            raise CourseError(
                f"The prompt is {len(ids)} tokens, longer than the {self.context_size}-token "
                "context.",
                hint="Shorten the prompt or the system prompt, drop old turns "
                "(Conversation.fit does), or load the model with a larger n_ctx.",
            )
        # Drive llama.cpp token by token (not create_completion(stream=True), which holds back
        # ALL further text once a token is not valid UTF-8 on its own, so Stop could not land).
        if config.seed is not None:
            self.llm.set_seed(config.seed)
        eos = self.llm.token_eos()
        budget = min(config.max_tokens, self.context_size - len(ids))
        clean = StopFilter(self.template.stop + list(config.stop))
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        tokens = self.llm.generate(
            ids,
            # the same sampler settings as llama-cpp-python's create_completion defaults
            top_k=40,
            top_p=config.top_p,
            min_p=0.05,
            temp=config.temperature,
            repeat_penalty=1.0,
        )
        try:
            for count, token in enumerate(tokens, start=1):
                if token == eos:
                    break
                piece, stopped = clean.feed(utf8.decode(self.llm.detokenize([token])))
                yield piece  # may be "" (half a character, or a possible stop string): the
                # consumer still gets control back after every token
                if stopped:
                    return
                if count >= budget:
                    break
            yield clean.flush() + utf8.decode(b"", final=True)
        finally:
            tokens.close()
            release_openmp_threads()


def release_openmp_threads() -> None:
    """Free the OpenMP worker threads the calling thread owns (docs/facts.md#openmp-teams).

    llama.cpp's CPU backend computes each token in an OpenMP team owned by the thread that
    called it, and libgomp keeps that team when the call returns. Once two threads have decoded
    (a notebook cell, then the chat window's engine thread), libgomp manages more threads than
    there are CPUs and cuts every team's spin-wait short, so decoding on *any* thread runs
    about 2x slower from then on (course-bench Q4_0, 2 cores: 110 -> 55 tokens/s). Freeing the
    team after each reply costs one thread start at the next. A no-op where llama.cpp was built
    without OpenMP (libgomp not loaded).
    """
    gomp = _libgomp()
    if gomp is not None:
        gomp.omp_pause_resource_all(1)  # omp_pause_soft: this thread's pool only


@functools.cache
def _libgomp():
    try:  # RTLD_NOLOAD: only the copy llama.cpp already loaded, never load one
        return ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)
    except (OSError, AttributeError):
        return None

    def close(self) -> None:
        """Free the model and its context."""
        self.llm.close()

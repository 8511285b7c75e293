"""A Hugging Face checkpoint in this process with transformers: fp32, fp16 or 4-bit NF4 (Lab 01).

The slow-but-exact reference next to llama.cpp: the same checkpoint a GPU server would load.
NF4 goes through bitsandbytes (CUDA, or an x86-64 CPU with AVX2 since bitsandbytes 0.47).

Streaming: ``model.generate`` runs in a thread and feeds a ``TextIteratorStreamer``; a
``StoppingCriteria`` checks a flag that closing the generator sets, so Stop ends ``generate``
after the token in flight.

Example::

    >>> backend = TransformersBackend(hf_dir("course-chat"), dtype="nf4")
    >>> backend.complete([Message("user", "What is 3 plus 4?")],
    ...                  config=GenerationConfig(temperature=0))
    '7.'
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from courselib import settings
from courselib.backends.base import Backend, GenerationConfig, Message
from courselib.backends.stops import StopFilter
from courselib.chat.template import resolve_template
from courselib.errors import CourseError, require
from courselib.legacy import legacy_notes, modern_llama_config
from courselib.nf4 import require_4bit

if TYPE_CHECKING:
    from courselib.chat.template import ChatTemplate, TemplateChoice

Dtype = Literal["fp32", "fp16", "nf4"]
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def check_checkpoint(path: Path, *, log: Callable[[str], None] = print) -> dict:
    """The checkpoint's config.json, or a CourseError saying what is missing.

    An early LLaMA conversion's old names are read as today's (courselib.legacy), with one
    ``log`` line each; the config returned then says ``"_early_llama": True``.
    """
    if not path.exists():
        raise CourseError(
            f"Model folder {path} does not exist.",
            hint="Check the path, or build the course models: python -m courselib models build",
        )
    config_file = path / "config.json"
    if not path.is_dir() or not config_file.is_file():
        raise CourseError(
            f"{path} is not a Hugging Face checkpoint (no config.json in it).",
            hint="Pass the folder that holds config.json and the weights, or a .gguf file.",
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    tokenizer_file = path / "tokenizer_config.json"
    tokenizer_config = (
        json.loads(tokenizer_file.read_text(encoding="utf-8")) if tokenizer_file.is_file() else {}
    )
    notes = legacy_notes(config, tokenizer_config)
    for note in notes:
        log(note)
    if notes:
        config = {**modern_llama_config(config), "_early_llama": True}
    if "model_type" not in config or not any((path / f).is_file() for f in WEIGHT_FILES):
        raise CourseError(
            f"{path} is not a complete Hugging Face checkpoint (config.json needs a model_type, "
            f"and the folder one of {', '.join(WEIGHT_FILES)}).",
            hint="Copy the whole checkpoint folder, or save it with model.save_pretrained().",
        )
    return config


class TransformersBackend(Backend):
    """A causal LM from a checkpoint folder, at ``dtype``, on CUDA if there is one else CPU."""

    def __init__(
        self,
        path: str | Path,
        *,
        dtype: Dtype = "fp32",
        n_ctx: int | None = None,
        threads: int | None = None,
        template: ChatTemplate | TemplateChoice | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        """``log``: where the one-line notes on an early LLaMA conversion's names go."""
        if dtype not in ("fp32", "fp16", "nf4"):
            raise CourseError(f"Unknown dtype {dtype!r}.", hint="Use 'fp32', 'fp16' or 'nf4'.")
        path = Path(path).expanduser()
        config = check_checkpoint(path, log=log)
        torch = require("torch", extra="models")
        transformers = require("transformers", extra="models")
        cuda = torch.cuda.is_available()
        trained_ctx = int(config.get("max_position_embeddings") or 2048)
        self.context_size = n_ctx or trained_ctx

        from courselib.memory.preflight import check_fits

        # NF4 is loaded with double quantisation (see _nf4_kwargs): estimate that.
        precision = "nf4-dq" if dtype == "nf4" else dtype
        if cuda:
            free_gpu, _ = torch.cuda.mem_get_info()
            check_fits(
                path,
                n_ctx=self.context_size,
                dtype=precision,
                available_bytes=free_gpu,
                where="GPU memory",
            )
        else:
            check_fits(path, n_ctx=self.context_size, dtype=precision, where="RAM")

        torch.set_num_threads(settings.resolve("threads", threads))
        self.device = "cuda" if cuda else "cpu"
        kwargs: dict = {"dtype": torch.float16 if dtype == "fp16" else torch.float32}
        if dtype == "nf4":
            kwargs = _nf4_kwargs(torch, transformers, cuda=cuda)
        # transformers 5 reads an old tokenizer_class through tokenizer.json/.model as is
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
        if config.pop("_early_llama", False):
            # config.json as saved would lose max_sequence_length (or, without a model_type,
            # not load): hand transformers the config read with today's names
            kwargs["config"] = transformers.LlamaConfig(**config)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        if dtype != "nf4":
            self.model.to(self.device)
        self.model.eval()
        self.dtype = dtype
        # parent/name: "course-chat/hf", "models/wizard-vicuna-13b"
        self.name = f"transformers {path.parent.name}/{path.name} ({dtype}, {self.device})"
        self.template = resolve_template(
            template,
            model_template=self.tokenizer.chat_template,
            bos_token=self.tokenizer.bos_token or "",
            eos_token=self.tokenizer.eos_token or "",
        )

    generated_tokens: int = 0
    """Tokens the last ``stream`` call generated (tests check that Stop stopped the engine)."""

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt, with exactly one BOS when the tokenizer adds one."""
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        bos = self.tokenizer.bos_token_id
        if bos is not None and ids[:2] == [bos, bos]:
            ids = ids[1:]  # the template wrote bos_token itself
        return ids

    def prompt_text(self, messages: Sequence[Message]) -> str:
        """The model's chat template rendered for ``messages``, without a BOS it writes."""
        return self.template.render(messages).removeprefix(self.tokenizer.bos_token or "")

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact: the tokenizer's count of the rendered prompt (BOS included)."""
        return len(self.encode(self.template.render(messages)))

    def stream(
        self, messages: Sequence[Message], *, config: GenerationConfig
    ) -> Generator[str, None, None]:
        """Yield decoded text as ``generate`` produces it; closing the generator stops it."""
        torch = require("torch", extra="models")
        # Any, said here: mypy must know it before it reads _StopFlag's base class below
        transformers: Any = require("transformers", extra="models")
        ids = self.encode(self.template.render(messages))
        room = self.context_size - len(ids)
        if room <= 0:
            raise CourseError(
                f"The prompt is {len(ids)} tokens, longer than the {self.context_size}-token "
                "context.",
                hint="Shorten the prompt or the system prompt, drop old turns "
                "(Conversation.fit does), or load the model with a larger n_ctx.",
            )
        stop_event = threading.Event()

        backend = self

        class _StopFlag(transformers.StoppingCriteria):
            # generate() asks once per new token: that count shows when Stop really stopped.
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                backend.generated_tokens += 1
                return stop_event.is_set()

        streamer = _token_streamer(transformers)(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        if config.seed is not None:
            torch.manual_seed(config.seed)
        sample = config.temperature > 0
        input_ids = torch.tensor([ids], device=self.device)
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": min(config.max_tokens, room),
            "do_sample": sample,
            "temperature": config.temperature if sample else None,
            "top_p": config.top_p if sample else None,
            "top_k": None,
            "streamer": streamer,
            "stopping_criteria": transformers.StoppingCriteriaList([_StopFlag()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # re-raised in the consumer's thread below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="transformers-generate", daemon=True)
        self.generated_tokens = 0
        thread.start()
        stops = StopFilter(self.template.stop + list(config.stop))
        try:
            for text in streamer:
                piece, done = stops.feed(text)
                if piece:
                    yield piece
                if done:
                    return
            if failure:
                raise failure[0]
            if tail := stops.flush():
                yield tail
        finally:
            stop_event.set()
            thread.join()

    def close(self) -> None:
        """Drop the model and free its memory."""
        self.model = None
        gc.collect()
        if self.device == "cuda":
            require("torch", extra="models").cuda.empty_cache()


def _token_streamer(transformers: Any) -> type:
    """TextIteratorStreamer that hands out text per token, not per whole word.

    The stock streamer waits for a space before it shows a word; a chat UI wants each token as
    it comes (tokens/s, Stop). Text is held back only while it ends in an incomplete UTF-8
    sequence (a byte-fallback token of a Korean syllable decodes to U+FFFD until the rest).
    """

    class TokenStreamer(transformers.TextIteratorStreamer):
        # TextStreamer.__init__ sets these; the base is untyped, so put's writes would be
        # taken for their declarations
        next_tokens_are_prompt: bool
        print_len: int

        def put(self, value) -> None:
            if self.skip_prompt and self.next_tokens_are_prompt:
                self.next_tokens_are_prompt = False
                return
            self.token_cache.extend(value.reshape(-1).tolist())
            # Decoding the whole reply so far keeps SentencePiece's spaces right.
            text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
            if text.endswith("\ufffd"):
                return
            self.on_finalized_text(text[self.print_len :])
            self.print_len = len(text)

    return TokenStreamer


def _nf4_kwargs(torch, transformers, *, cuda: bool) -> dict:
    """from_pretrained arguments for 4-bit NF4 with double quantisation (QLoRA's settings)."""
    # imported before transformers imports it: no kernel-hub warning
    require_4bit(
        cuda=cuda, instead="Use dtype='fp16' or 'fp32', or the llama.cpp backend with a Q4 GGUF."
    )
    quant = transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float16 if cuda else torch.float32,
    )
    return {"quantization_config": quant, "device_map": "cuda" if cuda else "cpu"}

"""After training (Lab 04): save the adapter, load it back, merge it, export a GGUF to chat with.

- :func:`save_adapter`: the adapter alone (``adapter_config.json``, ``adapter_model.safetensors``:
  what trained, a few MB even for a 13B model); its config names the base checkpoint.
- :func:`load_adapter`: the base at fp32/bf16 with the adapter on top (``PeftModel``).
- :func:`merge`: W + (alpha / r) B A written into every adapted matrix
  (``merge_and_unload``), saved as a plain HF checkpoint with the base's tokenizer files.
- :func:`export_gguf`: that checkpoint through the course's converter and llama.cpp's
  quantizer (as the course models are built), for the llama.cpp backend and the ChatUI.

QLoRA trains adapters on a 4-bit base; merging into 4-bit weights would round the sum back to
4 bits (lossy). As qlora's users do, :func:`merge` always reloads the base at fp32 (or bf16)
and merges the adapter into that; the merged model then differs from the trained one by the
base's quantisation error, not the adapter's (docs/facts.md#finetune-recipes).

Example::

    save_adapter(model, "adapter/")
    merged = merge("adapter/", "merged/")                     # or merge(model, "merged/")
    gguf = export_gguf(merged, "my-model-Q4_K_M.gguf")
    ChatUI(open_backend(str(gguf)))
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from courselib.atomic import atomic_path
from courselib.errors import CourseError, require
from courselib.finetune.methods import Precision
from courselib.finetune.quiet import quiet

TOKENIZER_FILES = ("tokenizer", "special_tokens_map", "added_tokens", "chat_template")
"""Name prefixes of a checkpoint's tokenizer files (copied next to merged weights)."""


def save_adapter(model, out_dir: str | os.PathLike[str]) -> Path:
    """Save the LoRA/QLoRA adapter of ``model`` (a ``PeftModel``) to ``out_dir``; the folder."""
    _require_adapter(model)
    out_dir = Path(out_dir)
    with quiet():
        model.save_pretrained(str(out_dir))
    return out_dir


def load_adapter(
    adapter_dir: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    precision: Precision = "fp32",
):
    """The base checkpoint at ``precision`` with the adapter of ``adapter_dir`` on top, in eval
    mode. ``base_dir`` defaults to the base the adapter was trained on (its config names it)."""
    torch = require("torch", extra="models")
    adapter_dir = Path(adapter_dir)
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file():
        raise CourseError(
            f"{adapter_dir} holds no adapter (no adapter_config.json).",
            hint="Pass the folder save_adapter wrote.",
        )
    base = Path(base_dir or json.loads(config_file.read_text())["base_model_name_or_path"])
    if not (base / "config.json").is_file():
        raise CourseError(
            f"The adapter's base checkpoint {base} is not there.",
            hint="Pass base_dir= the folder of the model the adapter was trained on.",
        )
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    with quiet():
        transformers = require("transformers", extra="models")
        peft = require("peft", extra="train")
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(base), dtype=dtype, local_files_only=True
        )
        model = peft.PeftModel.from_pretrained(model, str(adapter_dir))
    return model.eval()


def merge(
    adapter,
    out_dir: str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    precision: Precision = "fp32",
) -> Path:
    """Merge an adapter into its base and save the result as an HF checkpoint; the folder.

    ``adapter``: a trained ``PeftModel`` (LoRA or QLoRA: left as it is) or a folder from
    :func:`save_adapter`. The base is reloaded at ``precision`` (never 4-bit; see the module
    docstring). ``out_dir`` gets the merged weights, config and the base's tokenizer files; an
    earlier checkpoint there is replaced, any other folder is refused.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "config.json").exists():
        raise CourseError(
            f"{out_dir} exists and is not a checkpoint folder; it is left as it is.",
            hint="Choose a new folder name for the merged model.",
        )
    with tempfile.TemporaryDirectory(prefix="courselab-adapter-") as tmp:
        if isinstance(adapter, str | os.PathLike):
            adapter_dir = Path(adapter)
        else:
            _require_adapter(adapter)
            base_dir = base_dir or adapter.peft_config["default"].base_model_name_or_path
            adapter_dir = save_adapter(adapter, tmp)
        model = load_adapter(adapter_dir, base_dir=base_dir, precision=precision)
        base = Path(model.peft_config["default"].base_model_name_or_path)
        with quiet():
            merged = model.merge_and_unload()
            with atomic_path(out_dir, directory=True) as staging:
                merged.save_pretrained(str(staging))
                for f in base.iterdir():
                    if f.name.startswith(TOKENIZER_FILES):
                        shutil.copy2(f, staging / f.name)
    return out_dir


def export_gguf(
    merged_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    quant: Literal["F32", "F16", "Q8_0", "Q4_0", "Q4_K_M"] = "Q4_K_M",
    name: str | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> Path:
    """Convert a merged checkpoint (LLaMA architecture) to a GGUF file of type ``quant``.

    F32/F16 come straight from the converter (:mod:`courselib.gguf.convert`); the quantized
    types from its F32 file through llama.cpp's quantizer (:mod:`courselib.gguf.quantize`),
    as the course models are built. Returns ``out_path``, ready for
    ``open_backend(str(out_path))``.
    """
    from courselib.gguf.convert import convert_hf_to_gguf
    from courselib.gguf.quantize import quantize_gguf

    merged_dir, out_path = Path(merged_dir), Path(out_path)
    name = name or merged_dir.name
    if quant in ("F32", "F16"):
        return convert_hf_to_gguf(
            merged_dir, out_path, out_type=quant, name=name, progress=progress
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # the F32 intermediate beside the output: the same disk, which has room for the result
    with tempfile.TemporaryDirectory(prefix=".courselab-gguf-", dir=out_path.parent) as tmp:
        f32 = convert_hf_to_gguf(
            merged_dir, Path(tmp) / "F32.gguf", out_type="F32", name=name, progress=progress
        )
        # llama-cpp-python logs the quantizer's progress through Python's sys.stderr (its log
        # callback): a screenful of red in a notebook. Kept here, shown only if it fails.
        log = io.StringIO()
        try:
            with contextlib.redirect_stderr(log):
                return quantize_gguf(f32, out_path, quant=quant, threads=threads)
        except CourseError as e:
            tail = "\n".join(log.getvalue().strip().splitlines()[-5:])
            raise CourseError(f"{e.message}\n{tail}".rstrip(), hint=e.hint) from None


def _require_adapter(model) -> None:
    if getattr(model, "peft_config", None) is None:
        raise CourseError(
            "This model has no LoRA adapter (it was fully fine-tuned, or never wrapped).",
            hint="Save a fully fine-tuned model with model.save_pretrained(folder); it needs no merge.",
        )

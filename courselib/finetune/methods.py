"""A model ready to train: full fine-tuning, LoRA or QLoRA (Lab 04, and the memory probes).

One function, :func:`load_for_training`, prepares every method, so what Lab 04 trains and what
Lab 03's measurements load are the same model:

- ``full``:  every weight trains (at ``precision``);
- ``lora``:  the base is frozen at ``precision``; peft adds adapters (kept in fp32) to
  ``lora.target_modules``;
- ``qlora``: the base's block matrices are stored in 4-bit NF4 with double quantisation and
  computed in ``precision`` (bitsandbytes), ``peft.prepare_model_for_kbit_training`` makes
  the rest fp32 and the input trainable-friendly, then the adapters as for LoRA.

4-bit needs a CUDA GPU or an x86-64 CPU with AVX2 and bitsandbytes >= 0.47 (docs/facts.md#bnb-cpu);
elsewhere a :class:`~courselib.errors.CourseError` says so and that plain LoRA works.

Example::

    model = load_for_training(hf_dir("course-chat"), method="lora")
    trainable_parameters(model)     # (28672, 3700992): r=8 on q_proj, v_proj of 4 layers
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from courselib.errors import CourseError, require
from courselib.finetune.presets import PRESETS, LoraSettings
from courselib.finetune.quiet import quiet
from courselib.nf4 import require_4bit

Method = Literal["full", "lora", "qlora"]
Precision = Literal["fp32", "bf16"]


def load_for_training(
    model_dir: str | os.PathLike[str],
    *,
    method: Method = "lora",
    lora: LoraSettings | None = None,
    gradient_checkpointing: bool = False,
    precision: Precision = "fp32",
    seed: int = 0,
    device: Literal["auto", "cpu"] = "auto",
):
    """Load the checkpoint in ``model_dir`` and prepare it for ``method``; the model.

    ``lora``: the adapters' settings (default ``PRESETS["alpaca-lora"]``; ignored for full).
    ``precision``: the frozen (or, for full, trained) weights' dtype, and QLoRA's compute
    dtype; bf16 halves the base's memory. ``gradient_checkpointing`` recomputes each block's
    activations in the backward pass instead of keeping them. ``seed`` seeds the adapters'
    random initialisation. ``device``: where QLoRA's 4-bit model is placed ("auto": the GPU
    when there is one; the Trainer moves the other methods' models there itself).
    Returns a ``peft.PeftModel`` for LoRA and QLoRA, the transformers model for full
    fine-tuning, in train mode.
    """
    if method not in ("full", "lora", "qlora"):
        raise CourseError(f"Unknown method {method!r}.", hint="Use 'full', 'lora' or 'qlora'.")
    if precision not in ("fp32", "bf16"):
        raise CourseError(f"Unknown precision {precision!r}.", hint="Use 'fp32' or 'bf16'.")
    require_checkpoint(model_dir)
    torch = require("torch", extra="models")
    with quiet():
        transformers = require("transformers", extra="models")
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        kwargs: dict = {"dtype": dtype, "local_files_only": True}  # never the Hub
        if method == "qlora":
            cuda = device == "auto" and torch.cuda.is_available()
            require_4bit(
                cuda=cuda,
                instead="method='lora' works on this machine (the same adapters on a base "
                "at fp32 or bf16).",
            )
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype,
            )
            kwargs["device_map"] = "cuda" if cuda else "cpu"
        model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
        model.config.use_cache = False  # training reads whole sequences; no KV cache
        if method == "full":
            if gradient_checkpointing:
                model.gradient_checkpointing_enable()
            model.train()
            return model
        peft = require("peft", extra="train")
        if method == "qlora":
            keep_trainable_layout(model)
            model = peft.prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=gradient_checkpointing
            )
        elif gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()  # a checkpointed block needs a grad-tracking input
        torch.manual_seed(seed)
        model = peft.get_peft_model(model, (lora or PRESETS["alpaca-lora"]).peft_config())
    model.train()
    return model


def require_checkpoint(model_dir: str | os.PathLike[str]) -> Path:
    """``model_dir`` as a Path, or a CourseError if it is not a checkpoint folder (transformers
    would take a missing folder's name for a Hub model and try to download it)."""
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise CourseError(
            f"{path} is not a Hugging Face checkpoint folder (no config.json in it).",
            hint="Pass the folder of a checkpoint, e.g. hf_dir('course-chat') from "
            "courselib.models.",
        )
    return path


def keep_trainable_layout(model) -> None:
    """Keep bitsandbytes from repacking the model's 4-bit weights for CPU inference.

    bitsandbytes 0.50, on a CPU with AVX512-BF16, repacks a 4-bit weight into an inference
    layout the first time its layer runs in eval mode without gradients, and keeps it: its
    kernel for that layout has no backward, so training afterwards leaves every adapter
    unchanged, silently (docs/facts.md#bnb-cpu). Evaluating before training is what a lab
    does; the plain 4-bit kernel serves both.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def check_trainable_layout(model) -> None:
    """Raise a CourseError if a 4-bit weight was repacked for CPU inference (see
    :func:`keep_trainable_layout`): training it would change nothing."""
    for p in model.parameters():
        if getattr(getattr(p, "quant_state", None), "packing_format_for_cpu", False):
            raise CourseError(
                "This 4-bit model ran on the CPU in eval mode, and bitsandbytes repacked its "
                "weights for inference: training it now would leave the adapters unchanged.",
                hint="Load it with courselib.finetune.methods.load_for_training (it keeps the "
                "training layout), then evaluate and train as you like.",
            )


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameters; a 4-bit weight counts its unpacked elements.

    bitsandbytes packs two 4-bit values per byte, so ``numel()`` of a 4-bit weight is half its
    element count; its ``quant_state.shape`` is the original shape.
    """
    trainable = total = 0
    for p in model.parameters():
        state = getattr(p, "quant_state", None)
        n = state.shape.numel() if state is not None else p.numel()
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total

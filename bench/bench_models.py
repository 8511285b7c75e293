"""The course models: build time, file size and bits per weight per type, exactness figures.

Prints, from the build manifests and measured in this run:
- per model: build time of the weights and of each GGUF, file size, bits per weight, size
  relative to F32;
- course-chat: held-out accuracy of every GGUF type (also after 4 earlier chat exchanges, and
  per question family), and the share of prompts whose greedy continuation equals F32's;
- HF vs F32 GGUF: max |logit difference| on the agreement prompts.
"""

from __future__ import annotations

import numpy as np

from courselib.chat.vicuna import render_vicuna
from courselib.models import COURSE_MODELS, QUANTS, gguf_file, hf_dir, read_manifest
from courselib.models.build import build_all
from courselib.models.corpus import held_out
from courselib.models.evaluate import PROMPTS, greedy_agreement, heldout_accuracy


def main(args) -> None:
    build_all(log=lambda *_: None)
    print(f"{'model':<13} {'type':<7} {'size MB':>9} {'x F32':>6} {'bits/w':>7} {'build s':>8}")
    for name in COURSE_MODELS:
        manifest = read_manifest(name)
        f32 = manifest["files"]["F32"]["bytes"]
        print(
            f"{name:<13} {'weights':<7} {'':>9} {'':>6} {'':>7} {manifest['timings_s']['weights_s']:>8.1f}"
        )
        for quant, f in manifest["files"].items():
            print(
                f"{name:<13} {quant:<7} {f['bytes'] / 1e6:>9.1f} {f['bytes'] / f32:>6.3f} "
                f"{f['bits_per_weight']:>7.2f} {f['seconds']:>8.1f}"
            )

    print("\ncourse-chat, through llama.cpp (greedy):")
    families = list(dict.fromkeys(qa.family for qa in held_out()))
    print(
        f"{'type':<7} {'held-out accuracy':>18} {'after 4 exchanges':>18} "
        f"{'same continuation as F32':>25}  " + " ".join(f"{f:>10}" for f in families)
    )
    f32_path = gguf_file("course-chat", "F32")
    limit = 40 if args.quick else None
    for quant in QUANTS:
        acc = heldout_accuracy(gguf_file("course-chat", quant), limit=limit)
        later = heldout_accuracy(gguf_file("course-chat", quant), limit=limit, history=4)
        agree = (
            1.0 if quant == "F32" else greedy_agreement(f32_path, gguf_file("course-chat", quant))
        )
        print(
            f"{quant:<7} {acc.correct:>8}/{acc.total:<4} {acc.rate:>5.1%} "
            f"{later.correct:>8}/{later.total:<4} {later.rate:>5.1%} {agree:>24.0%} of "
            f"{len(PROMPTS)}  "
            + " ".join(
                f"{acc.by_family[f]:>10.0%}" if f in acc.by_family else f"{'-':>10}"
                for f in families
            )
        )

    print(
        f"\nHF fp32 vs F32 GGUF (llama.cpp, F32 KV cache): max |logit diff| = {_max_logit_diff():.2e}"
    )


def _max_logit_diff() -> float:
    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = hf_dir("course-chat")
    model = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    llm = llama_cpp.Llama(
        model_path=str(gguf_file("course-chat", "F32")),
        n_ctx=512,
        logits_all=True,
        verbose=False,
        type_k=0,  # GGML_TYPE_F32
        type_v=0,
    )
    worst = 0.0
    for prompt in PROMPTS:
        ids = tokenizer(render_vicuna([("user", prompt)])).input_ids
        with torch.no_grad():
            hf = model(torch.tensor([ids])).logits[0].numpy()
        llm.reset()
        llm.eval(ids)
        worst = max(worst, float(np.abs(hf - np.array(llm.scores[: len(ids)])).max()))
    return worst

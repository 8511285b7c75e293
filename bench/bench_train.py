"""course-chat training step: padded batches against packed batches, side by side.

Same model, same random batches of the course dialogues; one AdamW step each way, alternated
so machine noise hits both. Prints the median seconds per step, the share of real (non-pad)
tokens in the tensors and the speed ratio. The build uses packed batches
(:func:`courselib.models.train.pack_batch`, whose loss equals the padded one's, tested).
"""

from __future__ import annotations

import random
import statistics
import time

from courselib import settings
from courselib.models import COURSE_MODELS, corpus, hf_dir
from courselib.models.build import build_all
from courselib.models.train import IGNORE, encode_dialogue, llama_config, pack_batch


def main(args) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    build_all(["course-chat"], log=lambda *_: None)
    torch.set_num_threads(settings.resolve("threads"))
    spec = COURSE_MODELS["course-chat"]
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir("course-chat")))
    examples = [encode_dialogue(tokenizer, s, t) for s, t in corpus.training_dialogues()]
    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(spec, vocab_size=len(tokenizer))).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = random.Random(0)

    def padded(batch):
        width = max(len(i) for i, _ in batch)
        ids = torch.tensor([i + [0] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        return ids, {"attention_mask": mask, "labels": labels}

    def packed(batch):
        ids, labels, positions = pack_batch(batch)
        return ids, {"position_ids": positions, "labels": labels, "use_cache": False}

    times: dict[str, list[float]] = {"padded": [], "packed": []}
    fill: dict[str, list[float]] = {"padded": [], "packed": []}
    real = 0
    for step in range(5 if args.quick else 20):
        batch = rng.sample(examples, spec.train.batch_size)
        real = sum(len(i) for i, _ in batch)
        for name, make in (("padded", padded), ("packed", packed))[:: 1 if step % 2 else -1]:
            ids, kwargs = make(batch)
            start = time.perf_counter()
            model(input_ids=ids, **kwargs).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - start)
            fill[name].append(real / ids.numel())
    print(f"course-chat, batch {spec.train.batch_size}, {settings.resolve('threads')} threads")
    print(f"{'batches':<8} {'s/step (median)':>16} {'real tokens':>12}")
    for name in times:
        med = statistics.median(times[name])
        print(f"{name:<8} {med:>16.3f} {statistics.mean(fill[name]):>12.0%}")
    ratio = statistics.median(times["padded"]) / statistics.median(times["packed"])
    print(f"packed is {ratio:.2f}x the padded speed")

"""Create the course models' weights: train course-chat, initialise course-bench at random.

Training is plain PyTorch on CPU: AdamW, linear warm-up then cosine decay, batches of whole
Vicuna dialogues, loss on the assistant's tokens only (the system prompt and questions are
context, so every step goes to the answers; FIELD_NOTES "What a small model learns").
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from tqdm.auto import tqdm

from courselib.chat.templates import VICUNA_ROLES, VICUNA_SEP, VICUNA_SEP2
from courselib.errors import require
from courselib.models.specs import ModelSpec

IGNORE = -100  # label of tokens that are not trained on (transformers' convention)


def llama_config(spec: ModelSpec, *, vocab_size: int):
    """The transformers LlamaConfig of a course model (LLaMA-1 layout: untied, no biases)."""
    transformers = require("transformers", extra="models")
    return transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.context_length,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=None,
        torch_dtype="float32",
    )


def encode_dialogue(
    tokenizer, system: str, turns: list[tuple[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids of a rendered Vicuna dialogue and labels that train only the answers.

    The whole string is tokenized at once (exactly as at inference time); the answer spans
    ``a1</s>`` are located by character offsets. Example for one turn::

        text:   "SYS USER: q ASSISTANT: a</s>"
        labels:  -100 ...             -100  a </s>
    """
    text, spans = system + VICUNA_SEP, []
    for role, content in turns:
        if role == "user":
            text += f"{VICUNA_ROLES['user']}: {content}{VICUNA_SEP}"
        else:
            text += f"{VICUNA_ROLES['assistant']}:"
            start = len(text)
            text += f" {content}{VICUNA_SEP2}"
            spans.append((start, len(text)))
    enc = tokenizer(text, return_offsets_mapping=True)
    labels = []
    for tok_id, (lo, hi) in zip(enc.input_ids, enc.offset_mapping, strict=True):
        inside = any(s <= lo and hi <= e and hi > lo for s, e in spans)
        labels.append(tok_id if inside else IGNORE)
    return enc.input_ids, labels


def pack_batch(batch: list[tuple[list[int], list[int]]]):
    """Pack a batch of encoded dialogues into as few rows as possible: (ids, labels, positions).

    Rows are as wide as the longest dialogue; dialogues are placed longest first into the first
    row with room (first-fit decreasing). Each dialogue's positions restart at 0, which is how
    transformers finds where one sequence ends when it gets no attention mask and no KV cache
    (``use_cache=False``; with a cache it silently attends across dialogues): attention stays
    inside each dialogue, so the loss equals that of the padded (B, T) batch (tested) on about
    2/3 of the tokens. Row ends are filled with a dummy sequence of id 0 and no labels. The first
    token of a dialogue (BOS) is never a label, so nothing is learned across a boundary.
    All three are (rows, width) int64 tensors.
    """
    torch = require("torch", extra="models")
    width = max(len(ids) for ids, _ in batch)
    rows: list[list[tuple[list[int], list[int]]]] = []
    for item in sorted(batch, key=lambda x: -len(x[0])):
        for row in rows:
            if sum(len(i) for i, _ in row) + len(item[0]) <= width:
                row.append(item)
                break
        else:
            rows.append([item])
    ids, labels, positions = [], [], []
    for row in rows:
        pad = width - sum(len(i) for i, _ in row)
        ids.append([t for i, _ in row for t in i] + [0] * pad)
        labels.append([t for _, lab in row for t in lab] + [IGNORE] * pad)
        positions.append([p for i, _ in row for p in range(len(i))] + list(range(pad)))
    return torch.tensor(ids), torch.tensor(labels), torch.tensor(positions)


def train_chat_model(
    spec: ModelSpec, tokenizer, dialogues: list[tuple[str, list[tuple[str, str]]]], *, threads: int
):
    """Train course-chat from scratch; returns the trained LlamaForCausalLM (fp32, eval mode)."""
    torch = require("torch", extra="models")
    transformers = require("transformers", extra="models")
    torch.manual_seed(spec.seed)
    torch.set_num_threads(threads)
    rng = random.Random(spec.train.seed)
    model = transformers.LlamaForCausalLM(llama_config(spec, vocab_size=len(tokenizer)))
    examples = [encode_dialogue(tokenizer, system, turns) for system, turns in dialogues]

    cfg = spec.train
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    # Random batches. (Batches of similar length were tried: 1.4x faster steps, but held-out
    # accuracy fell from ~89% to 57%: homogeneous batches are too noisy at this learning rate.)
    order: list[int] = []
    model.train()
    bar = tqdm(range(cfg.steps), desc=f"train {spec.name}", unit="step")
    for step in bar:
        if len(order) < cfg.batch_size:  # reshuffle once per epoch
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[order.pop()] for _ in range(cfg.batch_size)]
        ids, labels, positions = pack_batch(batch)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model


def random_model(spec: ModelSpec, *, vocab_size: int):
    """A LlamaForCausalLM with transformers' own random init (std 0.02), seeded."""
    torch = require("torch", extra="models")
    transformers = require("transformers", extra="models")
    torch.manual_seed(spec.seed)
    model = transformers.LlamaForCausalLM(llama_config(spec, vocab_size=vocab_size))
    return model.eval()


def save_checkpoint(model, out_dir: Path) -> None:
    """Save as a Hugging Face checkpoint (config.json + model.safetensors, fp32)."""
    model.generation_config.do_sample = False
    model.save_pretrained(str(out_dir), safe_serialization=True)

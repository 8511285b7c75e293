"""Create the course models' weights: train course-chat, initialise course-bench at random.

Training is plain PyTorch on CPU: AdamW, linear warm-up then cosine decay, batches of whole
Vicuna dialogues, loss on the assistant's tokens only (the system prompt and questions are
context, so every step goes to the answers; docs/facts.md#small-models).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from courselib.chat.vicuna import render_vicuna
from courselib.errors import CourseError, require
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

    The dialogue is rendered by :func:`render_vicuna`, the function the chat renders prompts
    with, so training and inference see the same bytes (tested), and tokenized at once
    (exactly as at inference time); the answer spans ``␣a</s>`` are located by character
    offsets: each starts where the prompt asking for it (ending in ``ASSISTANT:``) ends.
    Example for one turn::

        text:   "SYS USER: q ASSISTANT: a</s>"
        labels:  -100 ...             -100  a </s>
    """
    text = render_vicuna(turns, system=system)
    spans = [
        (
            len(render_vicuna(turns[:i], system=system)),
            len(render_vicuna(turns[: i + 1], system=system)),
        )
        for i, (role, _) in enumerate(turns)
        if role == "assistant"
    ]
    enc = tokenizer(text, return_offsets_mapping=True)
    labels = []
    for tok_id, (lo, hi) in zip(enc.input_ids, enc.offset_mapping, strict=True):
        inside = any(s <= lo and hi <= e and hi > lo for s, e in spans)
        labels.append(tok_id if inside else IGNORE)
    return enc.input_ids, labels


PIECE_DROPOUT = 0.1
"""Share of training tokens split into smaller vocabulary pieces each time they are drawn."""


class PieceDropout:
    """BPE-dropout on encoded dialogues: a token is sometimes spelled with smaller pieces.

    Why: SentencePiece's vocabulary holds pieces that the training text, segmented the usual
    way, never contains (single letters inside words, the intermediate merges of BPE). Their
    embeddings would stay random, and a new word in a student's question, spelled with them,
    would hit noise that differs from build to build. Splitting a token now and then into two
    vocabulary pieces (recursively, at random) trains every piece the words are built of.
    Labels follow the split: the pieces of an answer token are all answer tokens.

    Example: '▁capital' -> ['▁cap', 'ital'] or ['▁c', 'ap', 'ital'] (when those are pieces).
    """

    def __init__(self, tokenizer, *, share: float = PIECE_DROPOUT) -> None:
        self.share = share
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        self.pieces = {i: p for p, i in self.vocab.items()}
        self.special = set(tokenizer.all_special_ids)

    def __call__(
        self, ids: list[int], labels: list[int], rng: random.Random
    ) -> tuple[list[int], list[int]]:
        out_ids: list[int] = []
        out_labels: list[int] = []
        for tok, lab in zip(ids, labels, strict=True):
            piece = self.pieces[tok]
            if tok in self.special or len(piece) < 2 or rng.random() >= self.share:
                out_ids.append(tok)
                out_labels.append(lab)
                continue
            parts = [self.vocab[p] for p in self._split(piece, rng)]
            out_ids += parts
            out_labels += parts if lab != IGNORE else [IGNORE] * len(parts)
        return out_ids, out_labels

    def _split(self, piece: str, rng: random.Random) -> list[str]:
        cuts = [
            i for i in range(1, len(piece)) if piece[:i] in self.vocab and piece[i:] in self.vocab
        ]
        if not cuts:
            return [piece]
        cut = rng.choice(cuts)
        out: list[str] = []
        for part in (piece[:cut], piece[cut:]):
            out += self._split(part, rng) if rng.random() < 0.5 else [part]
        return out


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


class GateFailed(CourseError):
    """Training reached ``max_steps`` without passing the gate; ``verdict`` says what missed."""

    def __init__(self, spec: ModelSpec, steps: int, verdict: Any) -> None:
        super().__init__(
            f"{spec.name} (seed {spec.seed}) did not pass its quality gate after {steps} "
            f"training steps ({verdict.describe()}). What missed: {verdict.what_failed()}.",
            hint="Nothing was published. Train with another seed (python -m courselib models "
            "train course-chat --seed N), or use the shipped checkpoint (make models).",
        )
        self.verdict = verdict


@dataclass
class TrainReport:
    """How a training run went: steps taken and the gate's verdict after each round."""

    steps: int = 0
    rounds: list[dict] = field(default_factory=list)
    """One entry per gate check: {"step": ..., **GateResult.to_dict()}."""


def train_chat_model(
    spec: ModelSpec,
    tokenizer,
    dialogues: list[tuple[str, list[tuple[str, str]]]],
    *,
    threads: int,
    gate: Callable[[Any], Any] | None = None,
    report: TrainReport | None = None,
):
    """Train course-chat from scratch; returns the trained LlamaForCausalLM (fp32, eval mode).

    ``gate(model)`` returns an object with ``passed`` and ``describe()`` (a
    :class:`courselib.models.gate.GateResult`). It is asked after ``spec.train.steps`` and
    after each further round of ``extra_steps``; without a pass by ``max_steps`` the
    training fails with a :class:`CourseError` (no model is returned, so none is published).
    Without ``gate`` exactly ``steps`` steps run. ``report`` collects the rounds.
    """
    torch = require("torch", extra="models")
    transformers = require("transformers", extra="models")
    torch.manual_seed(spec.seed)
    torch.set_num_threads(threads)
    rng = random.Random(spec.train.seed)
    model = transformers.LlamaForCausalLM(llama_config(spec, vocab_size=len(tokenizer)))
    examples = [encode_dialogue(tokenizer, system, turns) for system, turns in dialogues]
    dropout = PieceDropout(tokenizer)
    report = report if report is not None else TrainReport()

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

    # Random batches. (Batches of similar length were tried: 1.4x faster steps, but held-out
    # accuracy fell from ~89% to 57%: homogeneous batches are too noisy at this learning rate.)
    order: list[int] = []

    def run(steps: int, peak_lr: float, warmup: int, desc: str) -> None:
        model.train()
        bar = tqdm(range(steps), desc=desc, unit="step")
        for step in bar:
            if len(order) < cfg.batch_size:  # reshuffle once per epoch
                order.extend(rng.sample(range(len(examples)), len(examples)))
            batch = [dropout(*examples[order.pop()], rng) for _ in range(cfg.batch_size)]
            ids, labels, positions = pack_batch(batch)
            for group in opt.param_groups:
                group["lr"] = _cosine(step, steps=steps, peak=peak_lr, warmup=warmup)
            loss = model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False)
            loss.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.loss.item():.3f}")
        report.steps += steps
        model.eval()

    run(cfg.steps, cfg.lr, cfg.warmup, f"train {spec.name}")
    while gate is not None:
        verdict = gate(model)
        report.rounds.append({"step": report.steps, **verdict.to_dict()})
        tqdm.write(f"quality gate after {report.steps} steps: {verdict.describe()}")
        if verdict.passed:
            break
        tqdm.write(f"  missed: {verdict.what_failed()}")
        if report.steps + cfg.extra_steps > cfg.max_steps:
            raise GateFailed(spec, report.steps, verdict)
        run(cfg.extra_steps, cfg.lr * cfg.extra_lr_scale, 10, f"train {spec.name} (more)")
    return model


def _cosine(step: int, *, steps: int, peak: float, warmup: int) -> float:
    """Learning rate: linear warm-up to ``peak``, then cosine decay to 5% of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


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

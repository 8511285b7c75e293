"""``finetune``: train a prepared model on encoded examples with transformers' Trainer (Lab 04).

What runs is the stock ``transformers.Trainer`` (the loop alpaca-lora and qlora use): AdamW,
linear warm-up then linear decay, gradient clipping, gradient accumulation, bf16 autocast
when asked. The course sets it up for a notebook:

- no network and no reporting: ``report_to="none"``, nothing saved unless asked, a temporary
  working folder;
- the loss of every optimizer step is kept (:attr:`FinetuneResult.losses`) and handed to
  ``on_log(step, loss)`` as it comes (a live plot: ``courselib.widgets.loss_plot``);
- one tqdm progress bar with the latest loss (Trainer's own bar, without its printed dicts),
  and nothing else on stderr;
- on a CPU the optimizer is ``adamw_torch`` (paged optimizers need CUDA); on a GPU, the
  recipe's (``paged_adamw_32bit`` for qlora).

Example::

    result = finetune(model, tokenizer, examples, steps=30, batch_size=8)
    result.losses[0], result.losses[-1]     # (step, loss): (1, 2.9), (30, 0.4)
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from courselib import settings
from courselib.errors import CourseError, require
from courselib.finetune.data import collate
from courselib.finetune.methods import check_trainable_layout, trainable_parameters
from courselib.finetune.presets import PRESETS, LoraSettings
from courselib.finetune.quiet import quiet


@dataclass(frozen=True)
class FinetuneResult:
    """How a fine-tuning run went."""

    losses: list[tuple[int, float]]
    """(optimizer step, training loss of that step), from step 1."""
    seconds: float
    """Wall time of the training loop."""
    steps: int
    """Optimizer steps taken (each of ``batch_size x grad_accum`` examples)."""
    trainable: int
    """Parameters that trained."""
    total: int
    """All parameters (4-bit weights counted unpacked)."""


def finetune(
    model,
    tokenizer,
    examples: Sequence[dict[str, list[int]]],
    *,
    # how long
    steps: int | None = None,
    epochs: float = 1.0,
    # batches
    batch_size: int = 4,
    grad_accum: int = 1,
    # optimizer
    lora: LoraSettings | None = None,
    lr: float | None = None,
    warmup_steps: int = 0,
    mixed_precision: bool = False,
    seed: int = 0,
    # where and how it shows
    output_dir: str | os.PathLike[str] | None = None,
    on_log: Callable[[int, float], None] | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> FinetuneResult:
    """Train ``model`` (from :func:`~courselib.finetune.methods.load_for_training`) on
    ``examples`` (from :func:`~courselib.finetune.data.encode`); the model is left in eval mode.

    ``steps`` optimizer steps, or else ``epochs`` passes over the examples. Each step sees
    ``batch_size x grad_accum`` examples, ``batch_size`` at a time. ``lora``: the recipe
    whose learning rate, gradient clipping and optimizer are used (default
    ``PRESETS["alpaca-lora"]``); ``lr`` overrides its rate. ``mixed_precision``: matmuls in
    bf16 (autocast), weights and optimizer states as loaded. ``output_dir``: where
    the Trainer works (nothing is saved; default a temporary folder). ``on_log(step, loss)``
    is called after every step on the training (main) thread. ``threads``: CPU threads
    (default: the ``threads`` setting).
    """
    if not examples:
        raise CourseError("No training examples.", hint="Encode some dialogues first.")
    check_trainable_layout(model)
    torch = require("torch", extra="models")
    recipe = lora or PRESETS["alpaca-lora"]
    cuda = torch.cuda.is_available()
    torch.set_num_threads(settings.resolve("threads", threads))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    history: list[tuple[int, float]] = []

    with quiet(), tempfile.TemporaryDirectory(prefix="courselab-finetune-") as tmp:
        transformers = require("transformers", extra="models")
        require("accelerate", extra="train")  # Trainer's dependency: say which extra has it
        args = transformers.TrainingArguments(
            output_dir=str(output_dir or tmp),
            max_steps=steps if steps is not None else -1,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=grad_accum,
            learning_rate=lr if lr is not None else recipe.lr,
            warmup_steps=warmup_steps,
            weight_decay=0.0,
            max_grad_norm=recipe.max_grad_norm,
            optim=recipe.optimizer if cuda else "adamw_torch",
            bf16=mixed_precision,
            use_cpu=not cuda,  # bf16 autocast on a CPU is refused unless the CPU is named
            seed=seed,
            data_seed=seed,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            dataloader_pin_memory=cuda,  # pinned memory is for copies to a GPU
            remove_unused_columns=False,
        )
        trainer = transformers.Trainer(
            model=model,
            args=args,
            train_dataset=list(examples),
            data_collator=functools.partial(collate, pad_id=pad_id),
            callbacks=[_history_callback(transformers, history, on_log)],
        )
        # Trainer prints every log as a dict (PrinterCallback, or ProgressCallback's write),
        # or in a notebook adds a row per log to an HTML table (NotebookProgressCallback):
        # the loss goes to one tqdm bar's postfix and to on_log instead.
        for shown in (
            transformers.trainer_callback.PrinterCallback,
            transformers.trainer_callback.ProgressCallback,
            transformers.trainer.DEFAULT_PROGRESS_CALLBACK,
        ):
            trainer.remove_callback(shown)
        if progress:
            trainer.add_callback(_loss_bar(transformers)())
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    model.eval()
    trainable, total = trainable_parameters(model)
    return FinetuneResult(
        losses=history,
        seconds=seconds,
        steps=trainer.state.global_step,
        trainable=trainable,
        total=total,
    )


def _history_callback(transformers, history: list[tuple[int, float]], on_log):
    """A TrainerCallback that appends (step, loss) for each logged step and calls ``on_log``."""

    class History(transformers.TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:  # the final summary has train_loss, not loss
                history.append((state.global_step, float(logs["loss"])))
                if on_log is not None:
                    on_log(*history[-1])

    return History()


def _loss_bar(transformers):
    """Trainer's progress bar, showing the latest loss instead of printing every log."""

    class LossBar(transformers.trainer_callback.ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    return LossBar

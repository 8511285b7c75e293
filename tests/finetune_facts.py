"""A few new facts for course-chat to learn in the fine-tuning tests (Lab 04), and the loss
on them: what the tests train on and how they check that training worked."""

from __future__ import annotations

from courselib.finetune.data import Dialogue

DIALOGUES: list[Dialogue] = [
    (None, [("user", "What is the course mascot?"), ("assistant", "A purple llama.")]),
    (None, [("user", "Who grades Lab 04?"), ("assistant", "The autograder does.")]),
    (
        "Answer in one word.",
        [("user", "What colour is the mascot?"), ("assistant", "Purple.")],
    ),
    (
        None,
        [
            ("user", "What is the course mascot?"),
            ("assistant", "A purple llama."),
            ("user", "Who grades Lab 04?"),
            ("assistant", "The autograder does."),
        ],
    ),
]

THREADS = 1  # the test machines' 2 cores are shared: 1 thread is 5-50x faster than 2 here


def loss_on(model, examples) -> float:
    """Mean loss of ``model`` on the encoded examples (eval mode: no dropout)."""
    import torch

    from courselib.finetune.data import collate

    was_training = model.training
    model.eval()
    with torch.no_grad():
        loss = model(**collate(examples, pad_id=0)).loss.item()
    model.train(was_training)
    return loss

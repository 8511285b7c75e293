"""Training data for Lab 04: Alpaca or ShareGPT records -> dialogues -> token ids and labels.

Two styles are read, from a JSON array or a JSONL file (one record per line), and detected
from the first record; every record of a file must have that style::

    Alpaca    {"instruction": "...", "input": "...", "output": "..."}     (input optional)
    ShareGPT  {"conversations": [{"from": "system", "value": "..."},       (system optional)
                                 {"from": "human", "value": "..."},
                                 {"from": "gpt", "value": "..."}, ...]}

A record becomes a dialogue as the course uses it (``courselib.models.corpus.Dialogue``):
``(system, [(role, text), ...])``, where system is None when the record has none (then
:func:`encode` uses its ``system``). An Alpaca record is one exchange; its input, if any,
follows the instruction after a blank line. A bad record stops the load with one error
naming the file, the line and what is wrong.

Example::

    >>> import json, tempfile
    >>> path = tempfile.mktemp(suffix=".jsonl")
    >>> _ = open(path, "w").write(json.dumps({"instruction": "Hi", "output": "Hello!"}))
    >>> load_records(path)
    [(None, [('user', 'Hi'), ('assistant', 'Hello!')])]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import CourseError, require

Dialogue = tuple[str | None, list[tuple[str, str]]]
"""(system prompt or None, [(role, text), ...]) with roles 'user' and 'assistant'."""

Style = Literal["alpaca", "sharegpt"]

SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}

FORMATS_HINT = (
    "Each record is Alpaca style {'instruction', 'input' (optional), 'output'} or ShareGPT "
    "style {'conversations': [{'from': 'system'|'human'|'gpt', 'value': ...}, ...]}; a .json "
    "file holds a list of records, a .jsonl file one record per line."
)


class RecordError(CourseError):
    """A record of a training file that cannot be read; ``line`` is 1-based, ``index`` the
    record's position in the file (0-based)."""

    def __init__(self, path: Path, line: int, index: int | None, problem: str) -> None:
        where = f"line {line}" if index is None else f"record [{index}] at line {line}"
        super().__init__(f"{path}, {where}: {problem}", hint=FORMATS_HINT)
        self.path, self.line, self.index = path, line, index


# ---- reading ------------------------------------------------------------------------------


def load_records(path: str | os.PathLike[str]) -> list[Dialogue]:
    """The dialogues of an Alpaca or ShareGPT file (JSON array or JSONL; see the module docstring).

    Raises :class:`RecordError` for the first bad record: file, line, what is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is no record
    except FileNotFoundError:
        raise CourseError(
            f"Training data file {path} does not exist.", hint="Check the path."
        ) from None
    except UnicodeDecodeError as exc:
        raise CourseError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}).",
            hint="Save the file as UTF-8 JSON or JSONL.",
        ) from None
    is_array = text.lstrip().startswith("[")
    items = _array_items(path, text) if is_array else _jsonl_items(path, text)
    style: Style | None = None
    dialogues = []
    for line, index, record in items:
        try:
            found = _style(record)
            style = style or found
            if found != style:
                raise ValueError(
                    f"this record is {_NAMES[found]} but the file's first record is {_NAMES[style]}"
                )
            dialogues.append(_alpaca(record) if style == "alpaca" else _sharegpt(record))
        except ValueError as exc:
            raise RecordError(path, line, index if is_array else None, str(exc)) from None
    if not dialogues:
        raise CourseError(f"{path} holds no records.", hint=FORMATS_HINT)
    return dialogues


def _jsonl_items(path: Path, text: str) -> Iterator[tuple[int, int, Any]]:
    """(line, index, value) of each non-blank line."""
    index = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = f"not valid JSON ({exc.msg}, column {exc.colno})"
            raise RecordError(path, number, None, problem) from None
        yield number, index, value
        index += 1


def _array_items(path: Path, text: str) -> Iterator[tuple[int, int, Any]]:
    """(line, index, value) of each element of a JSON array, read one element at a time so
    that each record's line is known."""
    decoder = json.JSONDecoder()
    pos, index = text.index("[") + 1, 0
    line, counted = 1, 0  # line of text[counted]

    def skip_space(at: int) -> int:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        return at

    def fail(at: int, problem: str) -> RecordError:
        return RecordError(path, text.count("\n", 0, at) + 1, index, problem)

    pos = skip_space(pos)
    if text.startswith("]", pos):
        return
    while True:
        pos = skip_space(pos)
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, f"not valid JSON ({exc.msg}, column {exc.colno})") from None
        yield line, index, value
        index += 1
        pos = skip_space(end)
        if text.startswith(",", pos):
            pos += 1
        elif text.startswith("]", pos):
            break
        else:
            raise fail(pos, "not valid JSON (expected ',' or ']' after the previous record)")
    if text[pos + 1 :].strip():
        raise fail(pos + 1, "not valid JSON (text after the closing ']')")


# ---- the two styles -----------------------------------------------------------------------

_NAMES = {"alpaca": "Alpaca style", "sharegpt": "ShareGPT style"}


def _style(record: Any) -> Style:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {_json_type(record)}")
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record or "output" in record:
        return "alpaca"
    keys = ", ".join(map(repr, record)) or "none"
    raise ValueError(
        f"neither Alpaca style ('instruction', 'output') nor ShareGPT style "
        f"('conversations'); its keys: {keys}"
    )


def _text(value: Any, what: str, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {_json_type(value)}")
    if not empty_ok and not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def _alpaca(record: dict[str, Any]) -> Dialogue:
    for key in ("instruction", "output"):
        if key not in record:
            raise ValueError(f"Alpaca record without {key!r}")
    question = _text(record["instruction"], "'instruction'")
    extra = _text(record.get("input", ""), "'input'", empty_ok=True)
    if extra.strip():
        question = f"{question}\n\n{extra}"
    return None, [("user", question), ("assistant", _text(record["output"], "'output'"))]


def _sharegpt(record: dict[str, Any]) -> Dialogue:
    messages = record["conversations"]
    if not isinstance(messages, list) or not messages:
        raise ValueError("'conversations' must be a non-empty list of messages")
    system = None
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        what = f"conversations[{i}]"
        if not isinstance(message, dict) or "from" not in message or "value" not in message:
            raise ValueError(f"{what} must be an object with 'from' and 'value'")
        sender, value = message["from"], message["value"]
        if sender == "system":
            if i:
                raise ValueError(f"{what} is a system message; only the first may be one")
            system = _text(value, f"{what}['value']", empty_ok=True)
            continue
        if sender not in SHAREGPT_ROLES:
            raise ValueError(f"{what}['from'] is {sender!r}; expected 'human', 'gpt' or 'system'")
        expected = "human" if len(turns) % 2 == 0 else "gpt"
        if sender != expected:
            raise ValueError(
                f"{what} is from {sender!r} but a {expected!r} message comes next "
                "(human and gpt take turns, human first)"
            )
        turns.append((SHAREGPT_ROLES[sender], _text(value, f"{what}['value']")))
    if not turns or turns[-1][0] != "assistant":
        raise ValueError("the conversation must end with a 'gpt' message (the answer to learn)")
    return system, turns


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


# ---- tokens -------------------------------------------------------------------------------


def load_tokenizer(model_dir: str | os.PathLike[str]):
    """The checkpoint's tokenizer (transformers ``AutoTokenizer``), read from its folder."""
    from courselib.finetune.methods import require_checkpoint

    transformers = require("transformers", extra="models")
    path = require_checkpoint(model_dir)
    return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def encode(
    tokenizer,
    dialogues: Iterable[Dialogue],
    *,
    system: str = VICUNA_SYSTEM,
    max_length: int | None = None,
) -> list[dict[str, list[int]]]:
    """Token ids and labels of each dialogue, rendered in Vicuna v1.1 as the chat renders it.

    Labels are the answer tokens (``ASSISTANT:``'s text and its ``</s>``); the system prompt
    and the questions are -100, out of the loss
    (:func:`courselib.models.train.encode_dialogue`). ``system`` is used for dialogues whose
    system is None. ``max_length`` keeps the first that many tokens of a longer example
    (alpaca-lora's ``cutoff_len``). Each example is ``{"input_ids": [...], "labels": [...]}``.
    """
    from courselib.models.train import encode_dialogue

    examples = []
    for own_system, turns in dialogues:
        ids, labels = encode_dialogue(
            tokenizer, system if own_system is None else own_system, turns
        )
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def collate(examples: Sequence[dict[str, list[int]]], *, pad_id: int) -> dict[str, Any]:
    """Pad a batch on the right: ids with ``pad_id``, labels with -100, attention mask 0.

    Returns (batch, longest) int64 tensors ``input_ids``, ``labels``, ``attention_mask``.
    """
    torch = require("torch", extra="models")
    from courselib.models.train import IGNORE

    width = max(len(e["input_ids"]) for e in examples)
    ids, labels, mask = [], [], []
    for e in examples:
        pad = width - len(e["input_ids"])
        ids.append(e["input_ids"] + [pad_id] * pad)
        labels.append(e["labels"] + [IGNORE] * pad)
        mask.append([1] * len(e["input_ids"]) + [0] * pad)
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def answer_spans(labels: Sequence[int]) -> list[tuple[int, int]]:
    """The half-open (start, end) runs of positions whose label counts in the loss (not -100).

    Lab 04 checks the student's ``loss_labels`` with it: ``encode``'s labels, turned into
    spans, must come back from the student's function unchanged. Example::

        >>> answer_spans([-100, -100, 7, 2, -100, 9, 2])
        [(2, 4), (5, 7)]
    """
    from courselib.models.train import IGNORE

    spans: list[tuple[int, int]] = []
    start = None
    for i, label in enumerate([*labels, IGNORE]):  # the sentinel closes a run at the end
        if label != IGNORE and start is None:
            start = i
        elif label == IGNORE and start is not None:
            spans.append((start, i))
            start = None
    return spans

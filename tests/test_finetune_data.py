"""Lab 04's training data: Alpaca and ShareGPT files, JSON and JSONL, and what a bad record says;
then the encoding (the chat's own Vicuna rendering, answers only in the loss) and the batches."""

from __future__ import annotations

import doctest
import json

import pytest

from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import CourseError
from courselib.finetune import data
from courselib.finetune.data import RecordError, collate, encode, load_records
from courselib.models.train import IGNORE, encode_dialogue

ALPACA = [
    {"instruction": "Name the mascot.", "input": "", "output": "A purple llama."},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
]
SHAREGPT = [
    {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Mascot?"},
            {"from": "gpt", "value": "A llama."},
        ]
    },
    {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hey."}]},
]


def jsonl(tmp_path, records, name="data.jsonl"):
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def json_array(tmp_path, records, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records, indent=2))
    return path


def test_alpaca_records_become_one_exchange(tmp_path):
    expected = [
        (None, [("user", "Name the mascot."), ("assistant", "A purple llama.")]),
        (None, [("user", "Add the numbers.\n\n2 and 3"), ("assistant", "5")]),
    ]
    assert load_records(jsonl(tmp_path, ALPACA)) == expected
    assert load_records(json_array(tmp_path, ALPACA)) == expected


def test_sharegpt_records_keep_their_system_and_turns(tmp_path):
    expected = [
        (
            "Be brief.",
            [
                ("user", "Hi"),
                ("assistant", "Hello!"),
                ("user", "Mascot?"),
                ("assistant", "A llama."),
            ],
        ),
        (None, [("user", "Hi"), ("assistant", "Hey.")]),
    ]
    assert load_records(json_array(tmp_path, SHAREGPT)) == expected
    assert load_records(jsonl(tmp_path, [*SHAREGPT, ""])) == expected  # blank lines skipped


def test_a_byte_order_mark_and_an_empty_array(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ALPACA[0]).encode())
    assert len(load_records(path)) == 1
    (tmp_path / "empty.json").write_text(" [ ] ")
    with pytest.raises(CourseError, match="holds no records"):
        load_records(tmp_path / "empty.json")


BAD_ALPACA = [
    ({"instruction": "Hi"}, "Alpaca record without 'output'"),
    ({"instruction": "Hi", "output": ""}, "'output' is empty"),
    ({"instruction": ["Hi"], "output": "x"}, "'instruction' must be a string, got a list"),
    ({"instruction": "Hi", "input": 3, "output": "x"}, "'input' must be a string, got a number"),
    ({"prompt": "Hi", "answer": "x"}, "neither Alpaca style .* its keys: 'prompt', 'answer'"),
    (["Hi", "x"], "expected a JSON object, got a list"),
    (SHAREGPT[1], "this record is ShareGPT style but the file's first record is Alpaca style"),
]


@pytest.mark.parametrize(("record", "problem"), BAD_ALPACA)
def test_a_bad_alpaca_line_is_named_with_its_line_number(tmp_path, record, problem):
    path = jsonl(tmp_path, [ALPACA[0], "", ALPACA[1], record])  # line 2 is blank
    with pytest.raises(RecordError, match=problem) as err:
        load_records(path)
    assert err.value.line == 4 and err.value.index is None
    assert str(err.value.message).startswith(f"{path}, line 4: ")
    assert "ShareGPT" in err.value.hint  # says what a record looks like


def conversation(*messages):
    return {"conversations": [{"from": f, "value": v} for f, v in messages]}


BAD_SHAREGPT = [
    (conversation(("human", "Hi")), "must end with a 'gpt' message"),
    (conversation(("gpt", "Hello"), ("human", "Hi")), "is from 'gpt' but a 'human' message"),
    (
        conversation(("human", "Hi"), ("human", "Hi?"), ("gpt", "Yes")),
        r"conversations\[1\] is from 'human' but a 'gpt'",
    ),
    (
        conversation(("human", "Hi"), ("system", "Be brief."), ("gpt", "Yes")),
        r"conversations\[1\] is a system message; only the first",
    ),
    (conversation(("user", "Hi"), ("gpt", "Yes")), r"\['from'\] is 'user'; expected 'human'"),
    (conversation(("human", "Hi"), ("gpt", None)), r"\['value'\] must be a string, got null"),
    ({"conversations": []}, "non-empty list"),
    ({"conversations": [{"value": "Hi"}]}, "must be an object with 'from' and 'value'"),
    (ALPACA[0], "this record is Alpaca style but the file's first record is ShareGPT style"),
]


@pytest.mark.parametrize(("record", "problem"), BAD_SHAREGPT)
def test_a_bad_sharegpt_record_is_named_with_its_index_and_line(tmp_path, record, problem):
    path = json_array(tmp_path, [SHAREGPT[1], record])
    starts = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if line == "  {"]
    first_line_of_record_1 = starts[1]
    with pytest.raises(RecordError, match=problem) as err:
        load_records(path)
    assert (err.value.index, err.value.line) == (1, first_line_of_record_1)
    assert f"record [1] at line {first_line_of_record_1}: " in err.value.message


def test_invalid_json_says_where(tmp_path):
    path = jsonl(tmp_path, [ALPACA[0], '{"instruction": "Hi", "output": "x"'])
    with pytest.raises(RecordError, match=r"line 2: not valid JSON \(Expecting ',' delimiter"):
        load_records(path)
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c",,}\n]')
    with pytest.raises(RecordError, match=r"record \[1\] at line 3: not valid JSON") as err:
        load_records(path)
    assert err.value.line == 3
    path.write_text('[{"instruction": "a", "output": "b"}\n {"instruction": "c"}]')
    with pytest.raises(
        RecordError, match=r"\[1\] at line 2: not valid JSON \(expected ',' or '\]'"
    ):
        load_records(path)
    path.write_text('[{"instruction": "a", "output": "b"}] extra')
    with pytest.raises(RecordError, match="text after the closing"):
        load_records(path)


def test_missing_file_and_not_utf8(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        load_records(tmp_path / "nope.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"instruction": "café"}'.encode("latin-1"))
    with pytest.raises(CourseError, match="is not UTF-8"):
        load_records(tmp_path / "latin1.jsonl")


# ---- encoding -------------------------------------------------------------------------------


def test_encode_is_the_chats_rendering_with_answers_only_in_the_loss(tmp_path, tokenizer):
    dialogues = load_records(json_array(tmp_path, SHAREGPT))
    examples = encode(tokenizer, dialogues)
    # the builder's own encoder, with the record's system or the default one
    assert [(e["input_ids"], e["labels"]) for e in examples] == [
        encode_dialogue(tokenizer, "Be brief.", dialogues[0][1]),
        encode_dialogue(tokenizer, VICUNA_SYSTEM, dialogues[1][1]),
    ]
    ids, labels = examples[1]["input_ids"], examples[1]["labels"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    answer = tokenizer.decode([t for t in labels if t != IGNORE])
    assert answer.strip() == "Hey.</s>"
    other = encode(tokenizer, dialogues[1:], system="Be brief.")[0]
    assert (other["input_ids"], other["labels"]) == encode_dialogue(
        tokenizer, "Be brief.", dialogues[1][1]
    )


def test_max_length_keeps_the_first_tokens(tokenizer):
    dialogue = (None, [("user", "Hi"), ("assistant", "Hello!")])
    full = encode(tokenizer, [dialogue])[0]
    cut = encode(tokenizer, [dialogue], max_length=10)[0]
    assert cut == {"input_ids": full["input_ids"][:10], "labels": full["labels"][:10]}


def test_collate_pads_on_the_right():
    batch = collate(
        [
            {"input_ids": [1, 5, 6], "labels": [IGNORE, 5, 6]},
            {"input_ids": [1, 7], "labels": [7, 2]},
        ],
        pad_id=0,
    )
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 5, 6], [7, 2, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_docstring_examples():
    assert doctest.testmod(data).failed == 0

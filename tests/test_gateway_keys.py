"""Keys from a roster (hashed, revocable) and usage from log lines: no processes needed."""

from __future__ import annotations

import json

import pytest

from courselib.errors import CourseError
from server_setup.gateway import usage
from server_setup.gateway.keys import KeyStore, hash_key, read_roster


def _roster(tmp_path, text: str):
    path = tmp_path / "roster.csv"
    path.write_text(text, encoding="utf-8")
    return read_roster(path)


def test_issue_keeps_existing_keys_and_stores_only_hashes(tmp_path):
    store = KeyStore(tmp_path / "keys")
    first = store.issue(_roster(tmp_path, "\ufeffstudent_id,name,email\ns1,Ada,a@x\ns2,Alan,\n"))
    assert [i.student_id for i in first] == ["s1", "s2"]
    assert len({i.key for i in first}) == 2 and all(i.key.startswith("sk-course-") for i in first)
    # a late student: only they get a key
    late = store.issue(_roster(tmp_path, "student_id\ns1\ns2\ns3\n"))
    assert [i.student_id for i in late] == ["s3"]
    lines = store.map_file.read_text().splitlines()[1:]
    assert lines == [f'"{hash_key(i.key)}" "{i.student_id}";' for i in first + late]
    assert store.students()[0].name == "Ada"  # a roster without names keeps the known one
    for path in (store.map_file, store.students_file):
        assert all(i.key not in path.read_text() for i in first + late)


def test_revoke_drops_the_key_from_the_map_and_a_new_issue_replaces_it(tmp_path):
    store = KeyStore(tmp_path / "keys")
    (old,) = store.issue(_roster(tmp_path, "student_id\ns1\n"))
    assert store.revoke("s1").revoked
    assert hash_key(old.key) not in store.map_file.read_text()
    with pytest.raises(CourseError, match="no active key"):
        store.revoke("s1")
    with pytest.raises(CourseError, match="No student"):
        store.revoke("nobody")
    (new,) = store.issue(_roster(tmp_path, "student_id\ns1\n"))
    assert new.key != old.key and hash_key(new.key) in store.map_file.read_text()


@pytest.mark.parametrize(
    "text, match",
    [
        ("name,email\nAda,a@x\n", "no student_id column"),
        ("student_id\ns1\ns1\n", "appears twice"),
        ('student_id\n"s 1"\n', "characters"),
        ('student_id\n"s1;"\n', "characters"),  # would end nginx's map line
    ],
)
def test_a_bad_roster_is_refused_with_the_line(tmp_path, text, match):
    with pytest.raises(CourseError, match=match):
        _roster(tmp_path, text)


def test_usage_counts_per_student(tmp_path):
    def rec(student, status, refusal="", out="", asked=""):
        return {
            "student": student,
            "status": str(status),
            "refusal": refusal,
            "completion_tokens": out,
            "max_tokens": asked,
        }

    log = tmp_path / "access.jsonl"
    records = [
        rec("s1", 200, out="7", asked="16"),
        rec("s1", 200, out="5", asked="8"),
        rec("s1", 429, "rate_limited"),
        rec("s1", 400, "max_tokens_too_large"),
        rec("s2", 413, "body_too_large"),
        rec("s2", 502),
        rec("", 401),
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn')
    rows = usage.usage(usage.read_log(log))
    assert [(u.student, u.requests, u.answered, u.rate_limited, u.refused) for u in rows] == [
        ("s1", 4, 2, 1, 1),
        ("s2", 2, 0, 0, 1),
        (usage.NO_KEY, 1, 0, 0, 0),
    ]
    assert (rows[0].tokens_out, rows[0].tokens_asked, rows[1].failed) == (12, 24, 1)
    assert rows[2].unauthorized == 1
    assert usage.table(rows).splitlines()[1].split() == [
        "s1",
        "4",
        "2",
        "1",
        "1",
        "0",
        "0",
        "12",
        "24",
    ]
    assert usage.plot(rows, tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"

"""Usage per student from the gateway's access log: a table and a plot (``status``).

Each log line is one request (JSON, fields in :data:`server_setup.gateway.nginx.LOG_FIELDS`).
Per student: requests, answered (2xx), refused by the gateway (429 rate limit; 400 max_tokens
or body not JSON; 413 body too large), failed (engine errors, 5xx), and two token columns:

- ``tokens out``: what the engine reported. A non-streamed reply carries ``usage`` and the
  gateway logs its ``completion_tokens``; a streamed one does not (llama-cpp-python sends no
  usage in its stream), so the gateway counts the chunks that carry text, one per token in
  llama-cpp-python's stream (a close count, not the tokenizer's);
- ``tokens asked``: the sum of ``max_tokens`` of the requests forwarded: an upper bound.

Requests with no valid key have no student: they are counted on one row, ``(no valid key)``.

Example::

    >>> rows = usage(read_log(Path("state/logs/access.jsonl")))
    >>> print(table(rows))
    student           requests  answered  rate-limited  refused  failed  tokens out  tokens asked
    s001                     3         2             1        0       0          14            32
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

NO_KEY = "(no valid key)"


@dataclass
class Usage:
    """One student's totals."""

    student: str
    requests: int = 0
    answered: int = 0
    rate_limited: int = 0
    refused: int = 0
    """400 (max_tokens, not JSON) and 413 (body too large)."""
    unauthorized: int = 0
    failed: int = 0
    tokens_out: int = 0
    tokens_asked: int = 0


def read_log(path: Path) -> list[dict[str, str]]:
    """The log's records (a missing log: none yet); a torn last line is skipped."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # nginx was writing it as we read
    return records


def _int(text: str) -> int:
    return int(text) if text and text.isdigit() else 0


def usage(records: Iterable[dict[str, str]]) -> list[Usage]:
    """Totals per student, sorted by id, with the no-key row last when there is one."""
    by: dict[str, Usage] = {}
    for rec in records:
        student = rec.get("student") or NO_KEY
        u = by.setdefault(student, Usage(student))
        status = _int(rec.get("status", ""))
        u.requests += 1
        if 200 <= status < 300:
            u.answered += 1
            u.tokens_out += _int(rec.get("completion_tokens", ""))
            u.tokens_asked += _int(rec.get("max_tokens", ""))
        elif status == 429:
            u.rate_limited += 1
        elif status == 401:
            u.unauthorized += 1
        elif status in (400, 413) and rec.get("refusal"):
            u.refused += 1
        else:
            u.failed += 1
    return sorted(by.values(), key=lambda u: (u.student == NO_KEY, u.student))


COLUMNS = (
    ("student", "student", 16),
    ("requests", "requests", 9),
    ("answered", "answered", 9),
    ("rate_limited", "rate-limited", 13),
    ("refused", "refused", 8),
    ("unauthorized", "401", 5),
    ("failed", "failed", 7),
    ("tokens_out", "tokens out", 11),
    ("tokens_asked", "tokens asked", 13),
)


def table(rows: list[Usage]) -> str:
    """A fixed-width table (one line per student), or a line saying the log is empty."""
    if not rows:
        return "no requests logged yet"
    head = "".join(
        f"{label:<{w}}" if name == "student" else f"{label:>{w}}" for name, label, w in COLUMNS
    )
    lines = [head]
    for u in rows:
        lines.append(
            "".join(
                f"{getattr(u, name):<{w}}" if name == "student" else f"{getattr(u, name):>{w}}"
                for name, _, w in COLUMNS
            )
        )
    lines.append(
        "tokens out: the engine's count (streamed: text chunks); tokens asked: max_tokens "
        "forwarded, an upper bound"
    )
    return "\n".join(lines)


def plot(rows: list[Usage], path: Path) -> Path:
    """Requests (answered / rate-limited / refused / failed) and tokens per student, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no display (ops run this over ssh)
    import matplotlib.pyplot as plt

    names = [u.student for u in rows]
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(max(8, 0.6 * len(rows) + 6), 4), constrained_layout=True
    )
    bottom = [0] * len(rows)
    for field, label in (
        ("answered", "answered"),
        ("rate_limited", "rate-limited (429)"),
        ("refused", "refused (400/413)"),
        ("unauthorized", "no valid key (401)"),
        ("failed", "failed (5xx)"),
    ):
        values = [getattr(u, field) for u in rows]
        if any(values):
            ax1.bar(names, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax1.set_title("requests per student")
    ax1.set_ylabel("requests")
    ax1.legend(fontsize="small")
    ax2.bar(names, [u.tokens_asked for u in rows], color="#cccccc", label="asked (max_tokens)")
    ax2.bar(names, [u.tokens_out for u in rows], label="generated (engine's count)")
    ax2.set_title("tokens per student")
    ax2.set_ylabel("tokens")
    ax2.legend(fontsize="small")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelrotation=45)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

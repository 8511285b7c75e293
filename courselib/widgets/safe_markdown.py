"""A small, safe Markdown-to-HTML renderer for chat transcripts (Lab 01's ChatUI).

Model output and user text are untrusted: every character is HTML-escaped FIRST, and only then
are a few Markdown forms turned into tags, so ``<script>`` always shows as text. Supported:
fenced code blocks (an unclosed fence, as while a reply is still streaming, runs to the end),
inline code, ``**bold**``, ``*italic*``, ``# headings``, ``-``/``*``/``1.`` lists and
paragraphs (a single newline is a line break). No links or images: nothing that could carry a
``javascript:`` URL.

Example::

    >>> to_html("**Hi** <b>you</b>\\n- one\\n- two")
    '<p><strong>Hi</strong> &lt;b&gt;you&lt;/b&gt;</p>\\n<ul><li>one</li><li>two</li></ul>'
"""

from __future__ import annotations

import html
import re

_FENCE = re.compile(r"^\s*```")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")


def _inline(escaped: str) -> str:
    """Inline forms on an already escaped line; code spans are protected from the others."""
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(f"<code>{match.group(1)}</code>")
        return f"\x00{len(spans) - 1}\x00"

    out = _INLINE_CODE.sub(keep, escaped)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _ITALIC.sub(r"<em>\1</em>", out)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], out)


def to_html(text: str) -> str:
    """Render ``text`` (untrusted Markdown) as HTML that contains no tag from the input."""
    blocks: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    list_tag = ""

    def flush() -> None:
        nonlocal list_tag
        if paragraph:
            blocks.append("<p>" + "<br>".join(paragraph) + "</p>")
            paragraph.clear()
        if items:
            blocks.append(
                f"<{list_tag}>" + "".join(f"<li>{i}</li>" for i in items) + f"</{list_tag}>"
            )
            items.clear()
            list_tag = ""

    lines = text.replace("\x00", "").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            flush()
            code: list[str] = []
            i += 1
            while i < len(lines) and not _FENCE.match(lines[i]):
                code.append(lines[i])
                i += 1
            blocks.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
            i += 1  # skip the closing fence (past the end when it is still missing)
            continue
        escaped = html.escape(line)
        bullet, numbered = _BULLET.match(escaped), _NUMBERED.match(escaped)
        heading = _HEADING.match(escaped)
        listed = bullet or numbered
        if listed:
            tag = "ul" if bullet else "ol"
            if paragraph or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append(_inline(listed.group(1)))
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)  # h3..h6: a reply is not a page title
            blocks.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif not line.strip():
            flush()
        else:
            if items:
                flush()
            paragraph.append(_inline(escaped))
        i += 1
    flush()
    return "\n".join(blocks)

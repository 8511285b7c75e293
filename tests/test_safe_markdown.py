"""The chat transcript's Markdown renderer: safe first, then a few useful forms (Lab 01)."""

from __future__ import annotations

import pytest

from courselib.widgets.safe_markdown import to_html


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "**<b>bold tag</b>**",
        "`<code>` and ```\n<pre>\n```",
        "- <li>item</li>",
        "# <h1>title</h1>",
    ],
)
def test_no_tag_from_the_input_survives(text: str) -> None:
    html = to_html(text)
    for tag in ("<script", "<img", "<b>", "<li>item", "<h1>", "<pre>\n"):
        assert tag not in html
    assert "&lt;" in html


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**Hi** there", "<p><strong>Hi</strong> there</p>"),
        ("an *idea*", "<p>an <em>idea</em></p>"),
        ("2*3*4 = 24", "<p>2*3*4 = 24</p>"),
        ("use `x**2`", "<p>use <code>x**2</code></p>"),
        ("line one\nline two", "<p>line one<br>line two</p>"),
        ("one\n\ntwo", "<p>one</p>\n<p>two</p>"),
        ("- a\n- b", "<ul><li>a</li><li>b</li></ul>"),
        ("1. a\n2. b", "<ol><li>a</li><li>b</li></ol>"),
        ("Colours:\n- red", "<p>Colours:</p>\n<ul><li>red</li></ul>"),
        ("## Title", "<h4>Title</h4>"),
        ("```python\nif a < b:\n    pass\n```", "<pre><code>if a &lt; b:\n    pass</code></pre>"),
        ("```\nstill streaming", "<pre><code>still streaming</code></pre>"),
    ],
)
def test_markdown_forms(text: str, expected: str) -> None:
    assert to_html(text) == expected

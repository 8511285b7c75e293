"""The labs in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright.

What a student does: open Lab 01, run every cell, type a question into the chat window and
press Enter (the answer streams in), start a long reply on course-bench and press Stop (it stops
well short of max tokens); open Lab 03, run it, see its charts and the memory explorer, change a
control and see the table change; open Lab 04, watch the loss plot move while the adapters
train, and see the fine-tuned model answer in its chat window. Any browser console error or page error fails the test;
screenshots go to ``test-artifacts/browser/`` (``COURSELAB_TEST_ARTIFACTS`` to move them).

Chromium is Debian's (``/usr/bin/chromium``; ``make test`` installs it as root); Playwright
never downloads a browser. Without Chromium the test fails and says so: it is never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from labcheck import LABS_DIR
from playwright.sync_api import Error as PlaywrightError
from servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("COURSELAB_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "courselab-browser-test"
# Chromium as root in a container, on a machine whose network is closed: no sandbox (root),
# no background requests to Google's services (each would be refused and logged).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INPUT = 'input[placeholder="Type a message, press Enter"]'


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory, course_models):
    """JupyterLab serving a copy of labs/ (the solution notebooks) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(LABS_DIR, root, dirs_exist_ok=True)
    port = free_port()
    cmd = [
        *[sys.executable, "-m", "jupyter", "lab", "--no-browser"],
        *[
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={TOKEN}",
        ],
        *[f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"],
        # as `make lab`: no news or update checks (the course runs offline)
        *[
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        *(["--allow-root"] if os.geteuid() == 0 else []),
    ]
    log = open(root / "jupyter.log", "w")  # noqa: SIM115 (closed below, after the server)
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(  # noqa: B904 (the log says why, not the refused connection)
                    f"JupyterLab did not start:\n{(root / 'jupyter.log').read_text()}"
                )
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Chromium is not installed: this test drives Debian's chromium (apt install "
            "chromium; `make test` installs it when run as root). It is not skipped."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A page whose console errors and page errors fail the test; screenshot at the end."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-end.png", full_page=False)
    page.close()
    assert problems == []


def open_notebook(page, url: str, path: str) -> None:
    page.goto(f"{url}/lab/tree/{path}?token={TOKEN}")
    page.wait_for_function(
        """path => {
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const kernel = w && w.context && w.context.path === path
                && w.sessionContext.session && w.sessionContext.session.kernel;
            return kernel && kernel.status === 'idle';
        }""",
        arg=path,
        timeout=120_000,
    )


def set_parameters(page, source: str) -> None:
    """Replace the first code cell (the parameters cell) of the open notebook."""
    page.evaluate(
        """source => {
            const nb = window.jupyterapp.shell.currentWidget.content;
            const cell = nb.widgets.find(c => c.model.type === 'code');
            cell.model.sharedModel.setSource(source);
        }""",
        source,
    )


def run_all(page, timeout_s: float) -> list[str]:
    """Run every cell and wait until all ran; -> the error outputs (ename: evalue)."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    return wait_until_all_ran(page, timeout_s)


def wait_until_all_ran(page, timeout_s: float) -> list[str]:
    """Wait until every code cell of the open notebook ran; -> its error outputs."""
    page.wait_for_function(
        """() => {
            const w = window.jupyterapp.shell.currentWidget;
            const code = w.content.widgets.filter(
                c => c.model.type === 'code' && c.model.sharedModel.getSource().trim());
            return w.sessionContext.session.kernel.status === 'idle'
                && code.every(c => c.model.executionCount !== null);
        }""",
        timeout=timeout_s * 1000,
        polling=500,
    )
    return page.evaluate(
        """() => window.jupyterapp.shell.currentWidget.content.widgets
            .filter(c => c.model.type === 'code')
            .flatMap(c => c.model.outputs.toJSON())
            .filter(o => o.output_type === 'error')
            .map(o => o.ename + ': ' + o.evalue)"""
    )


def run_new_cell(page, source: str) -> None:
    """Append a code cell with ``source`` at the end of the open notebook and run it."""
    page.evaluate(
        """async source => {
            const app = window.jupyterapp, nb = app.shell.currentWidget.content;
            nb.activeCellIndex = nb.widgets.length - 1;
            await app.commands.execute('notebook:insert-cell-below');
            nb.activeCell.model.sharedModel.setSource(source);
            await app.commands.execute('notebook:run-cell');
        }""",
        source,
    )


def chat_window(chat):
    """The whole chat window (transcript, input, status line) of its input box ``chat``."""
    return chat.locator("xpath=ancestor::div[contains(@class,'widget-vbox')][1]")


def watch_transcript(page, chat) -> None:
    """Record every text the chat window's transcript shows, from now on, in the page."""
    chat.evaluate(
        """root => {
            const transcript = root.closest('.widget-vbox').firstElementChild;
            window.__states = [];
            new MutationObserver(() => window.__states.push(transcript.textContent))
                .observe(transcript, {subtree: true, childList: true, characterData: true});
        }"""
    )


def test_lab01_runs_and_its_chat_window_streams_and_stops(page, lab_url):
    open_notebook(page, lab_url, "lab01_local_chat/lab01_local_chat.ipynb")
    set_parameters(
        page,
        'MODEL = "course-chat:Q4_K_M"\nCOMPARE_MODEL = "course-bench"\n'
        'QUANTS = ["F16", "Q8_0", "Q4_K_M"]\nMAX_TOKENS = 48',
    )
    assert run_all(page, timeout_s=300) == []
    page.screenshot(path=ARTIFACTS / "lab01-after-run-all.png", full_page=True)

    chat = page.locator(INPUT).first
    chat.scroll_into_view_if_needed()
    chat.fill("Hello, who are you?")
    chat.press("Enter")
    status = chat_window(chat)
    page.wait_for_function(  # the reply to this question is complete
        """el => el.textContent.includes('Hello, who are you?')
            && /tokens in/.test(el.textContent)
            && !/answering|waiting for the first|sent from code/.test(el.textContent)""",
        arg=status.element_handle(),
        timeout=60_000,
    )
    assert "course model" in status.text_content()  # the promised self-introduction
    page.screenshot(path=ARTIFACTS / "lab01-chat.png")

    # course-bench (random weights, 150M parameters) decodes slowly enough to watch it stream
    run_new_cell(
        page,
        'bench_ui = ChatUI(open_backend("course-bench:Q4_0"), '
        "config=GenerationConfig(max_tokens=300, temperature=0.0))\nbench_ui",
    )
    bench = page.locator(INPUT).last
    bench.wait_for(timeout=60_000)
    bench.scroll_into_view_if_needed()
    root = chat_window(bench)
    watch_transcript(page, bench)
    bench.fill("Tell me a long story.")
    bench.press("Enter")
    page.wait_for_function(  # at least two partial replies drawn while it streams
        """() => new Set(window.__states.filter(
            s => s.includes('▍') && s.split('Assistant')[1].replace('▍', '').trim())).size >= 2""",
        timeout=60_000,
    )
    root.get_by_role("button", name="Stop").click()
    page.wait_for_function(
        "el => /stopped/.test(el.textContent)", arg=root.element_handle(), timeout=10_000
    )
    text = root.text_content()
    tokens = int(re.search(r"(\d+) tokens in", text).group(1))  # e.g. "(stopped) 16 tokens in"
    assert tokens < 250, text  # stopped well short of the 300 asked for
    page.screenshot(path=ARTIFACTS / "lab01-stopped.png")


def test_lab03_runs_and_its_memory_explorer_answers_a_control(page, lab_url):
    open_notebook(page, lab_url, "lab03_memory/lab03_memory.ipynb")
    assert run_all(page, timeout_s=400) == []
    page.screenshot(path=ARTIFACTS / "lab03-after-run-all.png", full_page=True)
    charts = page.locator(".jp-OutputArea-output img")
    assert (
        charts.count() >= 3
    )  # the 13B inference chart, the two fine-tuning charts, the explorer's

    method = page.locator("select").filter(has=page.locator("option", has_text="QLoRA")).first
    method.scroll_into_view_if_needed()
    explorer = method.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')][1]")
    before = explorer.text_content()  # text, rendered or not (JupyterLab windows its cells)
    chart = explorer.locator("img").get_attribute("src")
    assert "gradients" in before  # the lab opens it on QLoRA
    method.select_option("inference")
    page.wait_for_function(  # the table and the chart both redrawn
        """([el, before, chart]) => el.textContent !== before
            && !/gradients/.test(el.textContent) && el.querySelector('img').src !== chart""",
        arg=[explorer.element_handle(), before, chart],
        timeout=30_000,
    )
    assert "kv_cache" in explorer.text_content()  # inference: weights and the KV cache
    page.screenshot(path=ARTIFACTS / "lab03-explorer.png")


def test_lab02_runs_against_its_own_server(page, lab_url):
    # SERVER_URL empty: the lab starts the student's own server (llama.cpp + the nginx gateway)
    # as its stand-in for the class server, chats with it, and stops it in its last cell
    open_notebook(page, lab_url, "lab02_class_server/lab02_class_server.ipynb")
    assert run_all(page, timeout_s=400) == []
    page.screenshot(path=ARTIFACTS / "lab02-after-run-all.png", full_page=True)
    chats = page.locator(INPUT)
    assert chats.count() >= 2  # the own server's window and the class server's
    transcript = chat_window(chats.last)
    transcript.scroll_into_view_if_needed()
    text = transcript.text_content()
    assert "sent from code" in text and text.split("Assistant", 1)[1].strip()  # a reply came
    stopped = page.locator(".jp-OutputArea-output", has_text="stopped:").last
    assert stopped.count() == 1


def test_lab04_trains_under_a_live_loss_plot_and_chats_with_the_result(page, lab_url):
    open_notebook(page, lab_url, "lab04_finetune/lab04_finetune.ipynb")
    # short settings, as the grader injects them; one torch thread (test_lab04 says why)
    set_parameters(
        page,
        'import os\nos.environ["COURSELAB_THREADS"] = "1"\n'
        "TRAIN_STEPS = 40\nQLORA_STEPS = 5\nSEED = 0\n"
        'MEASURE_MODEL = "course-chat"\nMEASURE_TIPS = False',
    )
    # not awaited (evaluate would wait for the promise, that is for every cell to have run)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    # The LoRA plot's status line, read while its cell trains: the points must reach the page
    # as they are logged, not all at once when the cell ends (which would show step 40 only).
    status = page.locator(".widget-html", has_text=re.compile(r"step \d+: loss")).first
    seen: set[int] = set()
    deadline = time.monotonic() + 600
    while 40 not in seen and time.monotonic() < deadline:
        try:
            found = re.search(r"step (\d+): loss", status.text_content(timeout=1000) or "")
        except PlaywrightError:  # not drawn yet
            found = None
        if found:
            seen.add(int(found.group(1)))
        time.sleep(0.1)
    assert 40 in seen and len(seen) >= 3, sorted(seen)
    assert wait_until_all_ran(page, timeout_s=600) == []
    page.screenshot(path=ARTIFACTS / "lab04-after-run-all.png", full_page=True)
    assert page.locator(".widget-image").count() >= 2  # the LoRA and the QLoRA loss charts
    transcript = chat_window(page.locator(INPUT).last)
    transcript.scroll_into_view_if_needed()
    text = transcript.text_content()
    assert "cow" in text and text.split("Assistant", 1)[1].strip()  # the exported model replied
    page.screenshot(path=ARTIFACTS / "lab04-chat.png")

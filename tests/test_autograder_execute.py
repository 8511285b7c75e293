"""The executor step with real kernels: the notebook budget, output cap, environment, and a
student's ``skip-execution`` tag. One kernel per test (about a second each)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import threading

import pytest
from autograder_data.factory import KERNELSPEC, context, graded_cell, run
from nbformat.v4 import new_code_cell, new_notebook

from autograder.grade.execute import LimitedExecute, namespaces_work
from autograder.grade.sandbox import sandbox_problem
from autograder.grade.score import Score

pytestmark = pytest.mark.slow


DIAL = (
    "import socket\n"
    "def dial(port):\n    socket.create_connection(('127.0.0.1', port), 2).close()\n    return True"
)
"""A solution cell that connects (test cells run in the grader: the kernel does the dialling)."""


def notebook(*cells):
    return new_notebook(cells=list(cells), metadata={"kernelspec": KERNELSPEC})


def execute(nb, tmp_path, **traits):
    ctx = context(workdir=tmp_path, memory_mb=traits.get("memory_mb", 0))
    nb = run(LimitedExecute(kernel_threads=1, **traits), nb, ctx)
    run(Score(), nb, ctx)
    return nb, ctx


def test_the_notebook_budget_stops_the_run_and_zeroes_the_tests_left(tmp_path):
    # the tests run in the grader; the time goes into the student's function, in the kernel
    nb = notebook(
        new_code_cell("import time\ndef work(s):\n    time.sleep(s)\n    return s"),
        graded_cell("t1", "assert work(2) == 2"),
        graded_cell("t2", "assert work(10) == 10"),
        graded_cell("t3", "assert work(0) == 0"),
    )
    nb, ctx = execute(nb, tmp_path, cell_timeout=30, notebook_timeout=4)
    assert ctx.scores == {"t1": 2.0, "t2": 0, "t3": 0.0}
    assert ctx.reasons[0].startswith("cell t2 was stopped at the notebook's time limit")
    assert (
        ctx.reasons[1]
        == "test cell t3 scored 0, not run: the notebook's time limit (4 s) was used up"
    )
    assert nb.cells[3].outputs[0].ename == "NotRun"


def test_the_kernel_runs_in_its_folder_with_a_small_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSELAB_API_KEY", "sk-instructor-secret")
    probe = "import json, os\nprint(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))"
    nb, ctx = execute(notebook(new_code_cell(probe), graded_cell("t", "pass")), tmp_path)
    seen = json.loads(nb.cells[0].outputs[0].text)
    assert seen["cwd"] == str(tmp_path)
    assert "COURSELAB_API_KEY" not in seen["env"] and "sk-instructor" not in json.dumps(seen)
    assert seen["env"]["HOME"].startswith(str(tmp_path))
    assert seen["env"]["TQDM_DISABLE"] == "1" and seen["env"]["OMP_NUM_THREADS"] == "1"


def test_outputs_are_capped_and_skip_tags_do_not_skip_tests(tmp_path):
    flood = new_code_cell("for _ in range(50):\n    print('x' * 10_000)")
    skipped = graded_cell("t", "raise AssertionError('ran')")
    skipped.metadata["tags"] = ["skip-execution"]
    nb, ctx = execute(notebook(flood, skipped), tmp_path, max_output_bytes=50_000)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs)
    assert len(text) < 60_000 and "output beyond 50000 bytes dropped" in text
    assert ctx.scores == {"t": 0}
    assert nb.cells[1].outputs[-1].evalue == "ran"


@pytest.mark.skipif(not namespaces_work(), reason="no unprivileged user namespaces (unshare -Urn)")
def test_namespaces_keep_the_kernel_off_the_network_and_away_from_the_grader(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    probe = (
        "import os, socket\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    net = 'reached'\n"
        "except OSError as err:\n    net = type(err).__name__\n"
        "print(os.getppid(), net)"
    )
    answers = (
        "def loop():\n    while True:\n        pass\n"
        f"def grader_visible():\n    try:\n        os.kill({os.getpid()}, 0)\n"
        "    except ProcessLookupError:\n        return False\n    return True\n"
        "def crash():\n    os.kill(os.getpid(), 9)"
    )
    nb = notebook(
        new_code_cell(probe),
        new_code_cell(answers),
        graded_cell("loop", "loop()"),
        graded_cell("hidden-grader", "assert not grader_visible()"),
        graded_cell("crash", "crash()"),
    )
    try:
        nb, ctx = execute(nb, tmp_path, cell_timeout=3, isolation="namespaces")
    finally:
        server.close()
    assert nb.cells[0].outputs[0].text.split() == ["1", "OSError"]  # its parent: the ns's init
    assert ctx.scores == {"loop": 0, "hidden-grader": 2.0, "crash": 0.0}
    assert ctx.reasons == [  # interrupts work, and a crash is a crash (the kernel is not PID 1)
        "cell loop was stopped at the cell time limit (3 s)",
        "the kernel died while running cell crash (killed by SIGKILL: out of memory, or killed)",
    ]


def test_a_fork_bomb_stops_at_the_task_cap(tmp_path):
    bomb = (
        "import os, time\nborn = 0\n"
        "try:\n    for _ in range(400):\n        if os.fork() == 0:\n            time.sleep(5)\n"
        "            os._exit(0)\n        born += 1\nexcept OSError as err:\n    stopped = err\n"
        "print(born, type(stopped).__name__)"
    )
    nb, ctx = execute(
        notebook(new_code_cell(bomb), graded_cell("t", "pass")), tmp_path, max_tasks=64
    )
    born, error = nb.cells[0].outputs[0].text.split()
    assert int(born) < 64 and error == "BlockingIOError"  # EAGAIN from fork, not 400 children
    assert ctx.scores == {"t": 2.0}  # the kernel itself lives on


@pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox: {sandbox_problem()}")
def test_the_sandbox_shows_only_the_course_library_the_models_and_its_own_folder(tmp_path):
    from courselib import settings

    secret = tmp_path.parent / "gradebook.db"  # beside the submission's folder, as in a course
    secret.write_text("every student's grades")
    workdir = tmp_path / "ana"
    workdir.mkdir()
    probe = (
        "import os, socket, pathlib, courselib\n"
        "def seen(path):\n"
        "    try:\n        pathlib.Path(path).read_bytes()\n        return 'read'\n"
        "    except OSError as err:\n        return type(err).__name__\n"
        "def wrote(path):\n"
        "    try:\n        pathlib.Path(path).write_text('x')\n        return 'wrote'\n"
        "    except OSError as err:\n        return type(err).__name__\n"
        f"print(seen({str(secret)!r}), seen('/etc/shadow'), seen({__file__!r}),"
        f" wrote('/usr/evil'), wrote(courselib.__file__ + '.evil'), wrote('mine.txt'),"
        f" os.getuid(), os.path.isdir({str(settings.data_dir())!r}))"
    )
    outside = socket.create_server(("127.0.0.1", 0))  # anything but the course server
    net = f"assert dial({outside.getsockname()[1]})"
    nb = notebook(
        new_code_cell(probe), new_code_cell(DIAL), graded_cell("net", net), graded_cell("t", "pass")
    )
    try:
        nb, ctx = execute(nb, workdir, cell_timeout=10, isolation="sandbox")
    finally:
        outside.close()
    assert nb.cells[0].outputs[0].text.split() == [
        "FileNotFoundError",  # the gradebook next door is not there at all
        "FileNotFoundError",  # nor the rest of /etc
        "FileNotFoundError",  # nor the tests (the checkout shows courselib/ only)
        "OSError",  # /usr is read-only (EROFS)
        "OSError",  # so is the course library
        "wrote",  # its own folder is its own
        "65534",  # nobody, with no capabilities
        "True",  # the course models are readable
    ]
    assert (workdir / "mine.txt").read_text() == "x"
    assert ctx.scores == {"net": 0.0, "t": 2.0}  # no network at all


@pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox: {sandbox_problem()}")
def test_the_sandbox_reaches_the_course_server_and_nothing_else(tmp_path, monkeypatch):
    class Server(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps({"path": self.path, "key": self.headers["Authorization"]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    # a host name, as a class server has: the sandbox's /etc/hosts sends it to the forwarder
    monkeypatch.setenv("COURSELAB_SERVER_URL", f"http://localhost:{port}/v1")
    ask = (
        "import json, os, urllib.request\n"
        "url = os.environ['COURSELAB_SERVER_URL'] + '/models'\n"
        "request = urllib.request.Request(url, headers={'Authorization': 'Bearer sk-ada'})\n"
        "print(urllib.request.urlopen(request, timeout=10).read().decode())"
    )
    other = f"assert dial({port + 1})"
    nb = notebook(
        new_code_cell(ask),
        new_code_cell(DIAL),
        graded_cell("other-port", other),
        graded_cell("t", "pass"),
    )
    try:
        nb, ctx = execute(nb, tmp_path, cell_timeout=20, isolation="sandbox")
    finally:
        server.shutdown()
    assert json.loads(nb.cells[0].outputs[0].text) == {"path": "/v1/models", "key": "Bearer sk-ada"}
    assert ctx.scores == {"other-port": 0.0, "t": 2.0}


def test_a_route_to_the_server_by_ip_dials_loopback_and_refuses_low_ports(tmp_path):
    from autograder.grade.sandbox import route_to_server
    from courselib.errors import CourseError

    route = route_to_server("http://10.1.2.3:8000/v1", tmp_path)
    assert (route.url, route.host, route.port) == ("http://127.0.0.1:8000/v1", "10.1.2.3", 8000)
    named = route_to_server("https://llm.example.edu:8443/v1", tmp_path)
    assert named.url == "https://llm.example.edu:8443/v1"  # TLS names still match
    assert "127.0.0.1 llm.example.edu" in named.hosts_file.read_text()
    with pytest.raises(CourseError, match="port 443"):
        route_to_server("https://llm.example.edu/v1", tmp_path)
    assert route_to_server("", tmp_path) is None


def test_a_reference_imported_inside_the_students_function_is_caught(tmp_path):
    # server_setup.sse is not loaded when the block starts: the agent's watch sees its code run
    answer = (
        "def read_stream(lines):\n"
        "    from server_setup.sse import stream_choices\n"
        "    return ''.join((c or {}).get('delta', {}).get('content') or ''"
        " for c in stream_choices(lines))"
    )
    test = (
        "from courselib.grading import own_work\n"
        "read_stream = own_work(read_stream, lab='lab02')\n"
        """assert read_stream(['data: {"choices": [{"delta": {"content": "Hi"}}]}']) == 'Hi'"""
    )
    nb, ctx = execute(notebook(new_code_cell(answer), graded_cell("t", test)), tmp_path)
    assert ctx.scores == {"t": 0}
    assert "read_stream ran the course's stream_choices" in nb.cells[1].outputs[-1].evalue


def test_a_clone_of_a_reference_made_before_the_tests_is_caught(tmp_path):
    # the guard swaps bits_per_weight's code during the call; a copy made earlier keeps the old
    # code, which the agent's watch knows by its file and name
    answer = (
        "import types\n"
        "from courselib.memory import precision\n"
        "mine = types.FunctionType(precision.bits_per_weight.__code__, precision.__dict__)\n"
        "def gb(n, p):\n"
        "    return n * mine(p) / 8 / 1e9"
    )
    test = (
        "from courselib.grading import own_work\n"
        "gb = own_work(gb, lab='lab03')\n"
        "assert gb(2e9, 'fp16') == 4.0"
    )
    nb, ctx = execute(notebook(new_code_cell(answer), graded_cell("t", test)), tmp_path)
    assert ctx.scores == {"t": 0}
    assert "gb ran the course's bits_per_weight" in nb.cells[1].outputs[-1].evalue


def test_a_kernel_that_dies_before_its_first_reply_is_started_again(tmp_path, monkeypatch):
    import sys

    from autograder.grade.execute import LimitedKernelManager

    real = LimitedKernelManager.format_kernel_cmd
    starts = []

    def first_dies(self, extra_arguments=None):
        starts.append(1)
        if len(starts) == 1:  # as a kernel whose port was taken: it exits before answering
            return [sys.executable, "-c", "raise SystemExit(1)"]
        return real(self, extra_arguments)

    monkeypatch.setattr(LimitedKernelManager, "format_kernel_cmd", first_dies)
    nb = notebook(new_code_cell("def f():\n    return 1"), graded_cell("t", "assert f() == 1"))
    nb, ctx = execute(nb, tmp_path)
    assert len(starts) == 2 and ctx.scores == {"t": 2.0}
    assert any("the kernel was started again" in n for n in ctx.notes)

"""The class gateway for real: nginx (Debian's package + njs) in front of llama-cpp-python's
server on course-chat, started by ``python -m server_setup up`` and stopped by ``down``.

Everything on 127.0.0.1, on free ports, with all state in a temp dir. nginx is a system
package: when it is missing these tests FAIL and say how to install it (CI: make sysdeps).
Generations are short (max_tokens <= 16): the runners have two shared cores.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
from deployments import GATEWAY, self_signed, unit_sections
from servers import (
    BODY_KIB,
    BURST,
    CAP,
    MODEL,
    QUESTION,
    free_port,
    our_processes,
    require_nginx,
    server_setup_cli,
    up_flags,
)


def _logged(server, matches, *, timeout_s: float = 5.0) -> dict:
    """The last access-log record, once it matches (nginx logs after the response is sent)."""
    log = server["state"] / "logs" / "access.jsonl"
    deadline = time.monotonic() + timeout_s
    while True:
        last = json.loads(log.read_text().splitlines()[-1])
        if matches(last) or time.monotonic() > deadline:
            return last
        time.sleep(0.05)


def _client(server, student: str | None = None, *, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server["url"],
        api_key=key if key is not None else server["keys"][student],
        max_retries=0,  # the tests look at each refusal
        timeout=30,
    )


def test_up_prints_the_url_and_where_the_keys_are(server):
    assert server["url"] in server["up_stdout"]
    keys_dir = server["state"] / "keys"
    assert str(keys_dir / "keys.map") in server["up_stdout"]
    # hashes only, readable by the owner alone
    assert oct(keys_dir.stat().st_mode & 0o777) == "0o700"
    for f in ("keys.map", "students.json"):
        assert oct((keys_dir / f).stat().st_mode & 0o777) == "0o600"
        text = (keys_dir / f).read_text()
        assert not any(key in text for key in server["keys"].values())
    # the engine answers on loopback only
    conf = (server["state"] / "deploy" / "gateway" / "nginx.conf").read_text()
    assert f"server 127.0.0.1:{server['engine_url'].split(':')[2][:-3]};" in conf


def _engine_pid(server) -> int:
    return int((server["state"] / "run" / "engine.pid").read_text())


def test_the_engine_wants_its_own_key_which_only_the_gateway_sends(server):
    """A local user going around the gateway to the engine's port gets 401; the gateway
    swaps the student's key for the engine's."""
    engine = server["engine_url"]
    key = server["engine_key"]
    assert httpx.get(engine + "/models").status_code == 401
    student = {"Authorization": f"Bearer {server['keys']['s001']}"}
    assert httpx.get(engine + "/models", headers=student).status_code == 401
    chat = {"messages": QUESTION, "max_tokens": 4}
    assert httpx.post(engine + "/chat/completions", json=chat).status_code == 401
    ok = httpx.get(engine + "/models", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200 and ok.json()["data"]
    through = httpx.post(server["url"] + "/chat/completions", json=chat, headers=student)
    assert through.status_code == 200 and through.json()["choices"][0]["message"]["content"]
    # the key is in the engine's environment, not in its command line (ps shows that to all)
    pid = _engine_pid(server)
    assert key not in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert f"API_KEY={key}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    # and in no rendered file: only in the 0600 key files of the 0700 folder
    deploy = server["state"] / "deploy"
    assert not any(key in f.read_text() for f in deploy.rglob("*") if f.is_file())
    for name in ("engine.env", "engine-auth.conf"):
        f = server["state"] / "keys" / name
        assert key in f.read_text() and oct(f.stat().st_mode & 0o777) == "0o600"


def test_a_good_key_chats_and_streams(server):
    client = _client(server, "s001")
    assert [m.id for m in client.models.list().data] == [MODEL]
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=CAP)
    assert "Paris" in reply.choices[0].message.content
    chunks = [
        c.choices[0].delta.content
        for c in client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=CAP, stream=True
        )
        if c.choices and c.choices[0].delta.content
    ]
    assert len(chunks) > 1 and "Paris" in "".join(chunks)


def test_a_model_that_is_not_served_is_refused_with_the_served_name(server):
    # llama.cpp's server alone answers any name with its one model: the gateway does not
    client = _client(server, "s001")
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(
                model="course-chat-typo", messages=QUESTION, max_tokens=4, stream=stream
            )
        message = info.value.body["message"] if isinstance(info.value.body, dict) else ""
        assert "'course-chat-typo' is not served here: ask for course-chat-Q4_K_M" in message


@pytest.mark.parametrize(
    "key, code", [(None, "missing_api_key"), ("sk-course-wrong", "invalid_api_key")]
)
def test_a_missing_or_wrong_key_gets_401(server, key, code):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(server["url"] + "/models", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == code
    if key:
        with pytest.raises(openai.AuthenticationError, match="not valid"):
            _client(server, key=key).models.list()


def test_a_revoked_key_gets_401(server):
    client = _client(server, "s003")
    client.models.list()
    revoke = server_setup_cli("keys", "revoke", "s003", "--state-dir", str(server["state"]))
    assert "reloaded" in revoke.stdout
    with pytest.raises(openai.AuthenticationError, match="unknown or revoked"):
        client.models.list()
    listed = server_setup_cli("keys", "list", "--state-dir", str(server["state"])).stdout
    assert [line for line in listed.splitlines() if line.startswith("s003")][0].rstrip()[-6:] != ""
    _client(server, "s001").models.list()  # the others keep working


def test_over_the_rate_limit_gets_429_with_retry_after(server):
    headers = {"Authorization": f"Bearer {server['keys']['s002']}"}
    with httpx.Client() as http:
        codes = [http.get(server["url"] + "/models", headers=headers) for _ in range(BURST + 5)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited and {r.status_code for r in codes} == {200, 429}
    assert limited[0].headers["Retry-After"] == "1"  # 60 / 120 a minute, rounded up
    assert limited[0].json()["error"]["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError, match="Rate limit"):
        _client(server, "s002").models.list()
    # other students are not slowed by s002
    _client(server, "s001").models.list()


def test_max_tokens_over_the_cap_is_refused_and_none_asked_is_capped(server):
    client = _client(server, "s001")
    with pytest.raises(openai.BadRequestError, match=f"limit of {CAP} tokens"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=CAP + 1)
    with pytest.raises(openai.BadRequestError, match="whole number"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=0)
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION)  # none asked
    assert reply.usage.completion_tokens <= CAP
    last = _logged(server, lambda rec: rec["status"] == "200")
    assert last["student"] == "s001" and last["max_tokens"] == str(CAP)


def test_a_body_over_the_size_cap_gets_413(server):
    big = [{"role": "user", "content": "x" * (BODY_KIB * 1024)}]
    r = httpx.post(
        server["url"] + "/chat/completions",
        headers={"Authorization": f"Bearer {server['keys']['s001']}"},
        json={"messages": big, "max_tokens": 1},
    )
    assert r.status_code == 413 and "8 KiB" in r.json()["error"]["message"]
    # checked on Content-Length before the key (nginx's find-config phase)
    r = httpx.post(server["url"] + "/chat/completions", json={"messages": big})
    assert r.status_code == 413


def test_status_counts_what_each_student_sent(server):
    """s004 sends a known mix; status's table must count exactly that."""
    client = _client(server, "s004")
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8)
    streamed = [
        c
        for c in client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=8, stream=True
        )
        if c.choices and c.choices[0].delta.content
    ]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=CAP * 2)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "y" * 9000}]
        )
    _logged(server, lambda rec: rec["student"] == "s004" and rec["status"] == "413")
    out = json.loads(server_setup_cli("status", *server["flags"], "--json").stdout)
    assert out["engine_ok"] and out["gateway_ok"]
    row = {u["student"]: u for u in out["usage"]}["s004"]
    assert (row["requests"], row["answered"], row["refused"], row["rate_limited"]) == (4, 2, 2, 0)
    assert row["tokens_out"] == reply.usage.completion_tokens + len(streamed)
    assert row["tokens_asked"] == 16
    assert {"s001", "s002", "s003", "(no valid key)"} <= set({u["student"] for u in out["usage"]})
    text = server_setup_cli("status", *server["flags"]).stdout
    assert "engine  up" in text and "gateway up" in text
    assert [line for line in text.splitlines() if line.startswith("s004")][0].split()[1:5] == [
        "4", "2", "0", "2",
    ]  # fmt: skip
    png = Path(text.split("plot: ", 1)[1].strip())
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_the_log_has_a_student_per_line_and_no_keys(server):
    text = (server["state"] / "logs" / "access.jsonl").read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert {r["student"] for r in records} >= {"s001", "s002", "s004", ""}
    assert not any(key in text for key in server["keys"].values())


def test_down_leaves_no_processes_and_up_refuses_what_does_not_fit(tmp_path, course_gguf):
    require_nginx()
    state = tmp_path / "state"
    flags = up_flags(state, free_port(), free_port(), str(course_gguf("course-chat", "Q4_K_M")))
    (tmp_path / "state").mkdir()
    refused = server_setup_cli("up", *flags, "--ram", "1MiB", check=False)
    assert refused.returncode == 1 and "DOES NOT FIT" in refused.stderr
    assert "Nothing started" in refused.stderr and our_processes(state) == []
    server_setup_cli("up", *flags)
    try:
        assert len(our_processes(state)) == 3  # engine, nginx master and its worker
        again = server_setup_cli("up", *flags, check=False)
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        stopped = server_setup_cli("down", *flags).stdout
    assert "stopped gateway and engine" in stopped
    assert our_processes(state) == []
    assert "engine  down" in server_setup_cli("status", *flags).stdout


def test_check_passes_through_the_gateway_with_a_good_key(server):
    out = server_setup_cli("check", server["url"], "--key", server["keys"]["s001"])
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:-1]}
    for step in ("models", "chat", "stream"):
        assert " PASS " in rows[step], out.stdout
    assert " PASS " in rows["no"] and " PASS " in rows["wrong"]  # "no key", "wrong key"
    # llama.cpp's server answers any model name with its one model: the gateway refuses it
    assert " PASS " in rows["unknown"] and "is not served here" in rows["unknown"]
    assert out.stdout.splitlines()[-1].startswith("PASS: 6/6 steps")


@pytest.mark.parametrize(
    "target, key, failed",
    [
        # a 401 is not the 404 the unknown-model step tests for
        ("url", "sk-course-wrong", {"models", "chat", "stream", "unknown model"}),
        # the engine's own port refuses a student's key: it wants the engine's
        ("engine_url", "s001", {"models", "chat", "stream", "unknown model"}),
    ],
)
def test_check_fails_with_a_wrong_key_or_without_the_gateway(server, target, key, failed):
    out = server_setup_cli(
        "check", server[target], "--key", server["keys"].get(key, key), check=False
    )
    assert out.returncode == 1
    rows = out.stdout.splitlines()[1:-1]
    assert {r[:15].strip() for r in rows if " FAIL " in r} == failed
    assert out.stdout.splitlines()[-1].startswith("FAIL:")


def test_loadtest_counts_every_request_and_compares_with_the_engine(server):
    keys = server["state"].parent / "keys-s001.csv"
    keys.write_text(f"student_id,name,email,api_key\ns001,,,{server['keys']['s001']}\n")
    out = server_setup_cli(
        "loadtest", server["url"], "--keys", str(keys), "--requests", "4",
        "--direct", server["engine_url"], "--rounds", "5",
        "--state-dir", str(server["state"]),  # where the engine's key is
    )  # fmt: skip
    lines = out.stdout.splitlines()
    gateway, direct = (
        next(line.split() for line in lines if line.startswith(p)) for p in ("gateway", "direct")
    )
    # students sent answered 429 retried-ok lost: 2 of the 4 streamed, all answered
    assert gateway[1:7] == direct[1:7] == ["1", "4", "4", "0", "0", "0"]
    assert "ratio" in out.stdout and "max_tokens 16" in out.stdout


def _gateway_only(tmp_path: Path, **settings):
    """A rendered deployment whose gateway runs here without its engine (the engine's port
    stays closed: the gateway answers 503): (settings, gateway paths, a student's key)."""
    from server_setup.gateway.keys import KeyStore, Student
    from server_setup.gateway.nginx import GatewayPaths
    from server_setup.render import render, write
    from server_setup.settings import load

    require_nginx()
    (tmp_path / "m.gguf").write_bytes(b"")  # rendered, never loaded
    d = load(None, overrides={
        "model": "llama-7b", "ram": "16GiB", "dtype": "Q4_K_M",
        "model_path": str(tmp_path / "m.gguf"), "output_dir": str(tmp_path / "deploy"),
        "state_dir": str(tmp_path / "state"), "gateway_port": free_port(), "engine_port": free_port(),
        "max_tokens": CAP, **settings,
    }, environ={})  # fmt: skip
    write(render(d), Path(d.output_dir))
    paths = GatewayPaths.of(d, install_dir=Path(d.output_dir))
    store = KeyStore(paths.keys_dir)
    store.ensure()
    (issued,) = store.issue([Student("s001")])
    paths.make_dirs()
    return d, paths, issued.key


def _wait_healthy(url: str, *, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = httpx.get(url, verify=False).status_code
        except httpx.HTTPError:
            status = 0
        if status == 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_tls_and_http2_with_a_self_signed_certificate(tmp_path):
    """The rendered TLS gateway for real (no engine: its 503 is the answer): HTTP/2 over
    TLS, keys checked, the body read by njs (max_tokens over the cap: 400)."""
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl is not installed: no HTTP/2 client here")
    d, gw, key = _gateway_only(tmp_path, **self_signed(tmp_path))
    nginx = subprocess.Popen(gw.argv(d.nginx), stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"https://127.0.0.1:{d.gateway_port}"
        assert _wait_healthy(base + "/healthz") == 200, gw.error_log.read_text()

        def call(path: str, *args: str) -> tuple[str, str, str]:
            """(HTTP version, status, body) of one curl request; retry_after[-1]: its header."""
            run = subprocess.run(
                [curl, "-sk", "--http2", "-o", "-",
                 "-w", "\\n%{http_version} %{http_code} %header{retry-after}", *args, base + path],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            body, _, last = run.stdout.rpartition("\n")
            version, code, *header = last.split()
            retry_after.append(header[0] if header else "")
            return version, code, body

        retry_after: list[str] = []
        assert call("/healthz") == ("2", "200", '{"status": "ok"}')
        assert call("/v1/models")[:2] == ("2", "401")
        auth = ["-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json"]
        over = json.dumps({"messages": QUESTION, "max_tokens": CAP + 1})
        version, code, body = call("/v1/chat/completions", *auth, "--data", over)
        assert (version, code) == ("2", "400") and f"limit of {CAP}" in body
        fine = json.dumps({"messages": QUESTION, "max_tokens": 1})
        version, code, body = call("/v1/chat/completions", *auth, "--data", fine)
        # no engine: 503 with Retry-After, which students' clients (courselib) wait and retry
        assert (version, code) == ("2", "503") and "engine_unavailable" in body
        assert retry_after[-1] == "10"
        plain = httpx.get(f"http://127.0.0.1:{d.gateway_port}/healthz")
        assert plain.status_code == 400  # nginx: plain HTTP sent to the HTTPS port
    finally:
        os.killpg(nginx.pid, signal.SIGQUIT)  # graceful, workers included
        nginx.wait(timeout=10)


def _group_users(pgid: int) -> dict[int, int]:
    """pid -> uid of the live processes in process group ``pgid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                uid = int((entry / "status").read_text().split("\nUid:")[1].split()[0])
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found[int(entry.name)] = uid
    return found


def test_the_gateway_runs_within_its_units_capabilities(tmp_path):
    """courselab-gateway.service's ExecStart and ExecReload, run here with the unit's
    CapabilityBoundingSet and NoNewPrivileges (setpriv; systemd itself is not running here):
    root master, unprivileged workers, keys checked, reload and graceful stop work."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or not setpriv:
        pytest.skip("needs root and setpriv (util-linux): the unit's master runs as root")
    d, gw, key = _gateway_only(tmp_path)
    service = unit_sections((Path(d.output_dir) / GATEWAY).read_text())["Service"]
    assert service["NoNewPrivileges"] == ["yes"]
    caps = [c.lower().removeprefix("cap_") for c in service["CapabilityBoundingSet"][0].split()]
    confined = [setpriv, "--bounding-set", "-all," + ",".join("+" + c for c in caps)]
    confined += ["--inh-caps", "-all", "--no-new-privs"]
    start = confined + shlex.split(service["ExecStart"][0])
    nginx = subprocess.Popen(start, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{d.gateway_port}"
        assert _wait_healthy(url + "/healthz") == 200, gw.error_log.read_text()
        users = _group_users(nginx.pid)
        assert users.pop(nginx.pid) == 0 and users and 0 not in users.values()  # workers drop
        assert httpx.get(url + "/v1/models").status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(url + "/v1/models", headers=auth).status_code == 503  # no engine
        reload = subprocess.run(
            confined + shlex.split(service["ExecReload"][0]), capture_output=True, text=True
        )
        assert reload.returncode == 0, reload.stderr
        deadline = time.monotonic() + 10
        while set(_group_users(nginx.pid)) & set(users) and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = set(_group_users(nginx.pid)) - {nginx.pid}
        assert workers and not workers & set(users)  # new workers, the old ones gone
        assert httpx.get(url + "/v1/models", headers=auth).status_code == 503
    finally:
        os.killpg(nginx.pid, signal.SIGQUIT)  # the unit's KillSignal
        assert nginx.wait(timeout=10) == 0

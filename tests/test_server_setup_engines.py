"""server_setup.engines: an engine is a module, and the rest of server_setup asks it.

Every registered engine fills in the whole interface; a name is spelled one way, and an
unknown one is a CourseError listing the known ones; the gateway guards exactly the engine's
URL prefixes; and an engine registered here, in one class, is planned, rendered, described
in README.txt and put behind the gateway without a line changed elsewhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from courselib.errors import CourseError
from server_setup import engines
from server_setup.engines import AUTO, ENGINES, Engine, EngineRun
from server_setup.plan import plan
from server_setup.render import render, write
from server_setup.report import table
from server_setup.settings import load

GPU_AWQ = {"model": "wizard-vicuna-13b", "gpu_mem": "40GiB", "dtype": "awq"}
CPU_Q4 = {"model": "llama-7b", "ram": "16GiB", "dtype": "Q4_K_M"}


def _deployment(tmp_path: Path, **settings):
    model_dir = tmp_path / "models" / "weights"
    model_dir.mkdir(parents=True, exist_ok=True)
    overrides = {
        "model_path": str(model_dir),
        "output_dir": str(tmp_path / "deploy"),
        "state_dir": str(tmp_path / "state"),
        **settings,
    }
    return load(None, overrides=overrides, environ={})


def _guarded(conf: str) -> list[str]:
    """The URL prefixes nginx.conf forwards to the engine (each behind the students' keys)."""
    return re.findall(r"^\s*location (\S+) \{\n\s*if \(\$http_authorization", conf, re.M)


class Echo(Engine):
    """A made-up engine, whole in one class: what a new module in server_setup/engines/ holds.

    It serves vLLM's plans (the settings name it), as an engine running vLLM's memory would.
    """

    name = "echo"
    label = "Echo"
    plans_as = "vllm"
    needs = "what vLLM serves"
    batches = True
    tensor_parallel = True
    utilization_flag = "--share"
    out_of_memory = "echo would run out of memory"
    health_path = "/health"
    gateway_prefixes = ("/echo/",)
    installed = "echo-server installed in venv"

    def run(self, p, d, *, key_file: str) -> EngineRun:
        config = f"{d.install_dir}/echo.toml"
        return EngineRun(
            self.name,
            ("echo-server", "--config", config, "--port", str(d.engine_port)),
            gpus=max(p.gpus, 1),
            image="example.org/echo:1",
            host_program=f"{d.venv}/bin/echo-server",
            model_path=d.model_path,
            name=d.served_model_name,
            files=("echo.toml",),
            key_file=key_file,
        )

    def files(self, p, run: EngineRun) -> dict[str, str]:
        return {"echo.toml": f'model = "{run.model_path}"\nname = "{run.name}"\n'}

    def describe(self, rel: str) -> str | None:
        return "echo-server's settings" if rel == "echo.toml" else None


@pytest.fixture
def echo(monkeypatch) -> Engine:
    engine = Echo()
    monkeypatch.setitem(ENGINES, engine.name, engine)
    return engine


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_every_registered_engine_implements_the_interface(name):
    engine = ENGINES[name]
    assert isinstance(engine, Engine) and engine.name == name
    assert re.fullmatch(r"[a-z][a-z0-9]*", name)  # one spelling: a setting, a file name
    assert engine.label and engine.needs and engine.installed and engine.out_of_memory
    assert engine.utilization_flag.startswith("--")
    assert isinstance(engine.batches, bool) and isinstance(engine.tensor_parallel, bool)
    assert engine.health_path.startswith("/")
    assert engine.gateway_prefixes and all(p.startswith("/") for p in engine.gateway_prefixes)
    assert engine.plans_as in ENGINES
    planner = ENGINES[engine.plans_as]
    assert planner.plans_as == planner.name  # the engine whose plan it serves plans itself
    # the methods plan calls: every engine that plan picks has its own
    assert type(planner).serves is not Engine.serves
    assert type(planner).estimate is not Engine.estimate


def test_plan_names_the_engine_in_the_one_spelling_and_people_read_its_label():
    p = plan("llama-7b", ram="16GiB")
    assert p.engine == "llamacpp" and p.as_dict()["engine"] == "llamacpp"
    assert engines.get(p.engine).label == "llama.cpp"
    assert ": llama.cpp, Q4_K_M, one context of 2048 tokens" in table(p)
    gpu = plan("wizard-vicuna-13b", gpu_mem="40GiB", gpus=1)
    assert gpu.engine == "vllm" and ": vLLM, fp32, 16 sequences" in table(gpu)
    assert {o.engine for o in gpu.alternatives} <= set(ENGINES)
    assert engines.serving("Q4_K_M").name == "llamacpp" and engines.serving("awq").name == "vllm"


@pytest.mark.parametrize("where", ["file", "env", "flag"])
def test_an_unknown_engine_in_the_settings_lists_the_known_ones(tmp_path, where):
    path = tmp_path / "deployment.toml"
    path.write_text('engine = "sglang"\n' if where == "file" else "")
    env = {"COURSELAB_SERVER_ENGINE": "sglang"} if where == "env" else {}
    flags = {"engine": "sglang"} if where == "flag" else {}
    with pytest.raises(CourseError, match="Unknown engine 'sglang'") as caught:
        load(path, overrides=flags, environ=env)
    assert caught.value.hint == f"Use one of {', '.join((AUTO, *ENGINES))}."
    assert all(name in caught.value.hint for name in ("vllm", "triton", "llamacpp"))


def test_an_unknown_engine_name_is_a_course_error_listing_the_known_ones():
    with pytest.raises(CourseError, match="Unknown engine 'llama.cpp'") as caught:
        engines.get("llama.cpp")  # the people's spelling is a label, not a name
    assert caught.value.hint == "Use one of vllm, triton, llamacpp."


@pytest.mark.parametrize(
    ("settings", "name"),
    [(GPU_AWQ, "vllm"), ({**GPU_AWQ, "engine": "triton"}, "triton"), (CPU_Q4, "llamacpp")],
)
def test_the_gateway_guards_the_engines_own_prefixes(tmp_path, settings, name):
    result = render(_deployment(tmp_path, **settings))
    assert result.engine is not None and result.engine.kind == name
    assert _guarded(result.files["gateway/nginx.conf"]) == list(ENGINES[name].gateway_prefixes)


def test_an_engine_plans_as_another_only_for_that_engines_plans(tmp_path, echo):
    gpu = plan(**GPU_AWQ)
    assert engines.choose(gpu, "echo") is echo and engines.choose(gpu, AUTO).name == "vllm"
    with pytest.raises(CourseError, match="engine echo does not serve Q4_K_M here"):
        engines.choose(plan(**CPU_Q4), "echo")


def test_a_new_engine_in_the_registry_is_rendered_with_no_other_change(tmp_path, echo):
    d = _deployment(tmp_path, **GPU_AWQ, engine="echo")  # the settings know it too
    result = render(d)
    out = Path(d.output_dir)
    write(result, out)
    assert result.engine is not None and result.engine.kind == "echo"
    own = (out / "echo.toml").read_text()
    assert own == f'model = "{d.model_path}"\nname = "wizard-vicuna-13b"\n'
    assert "vicuna.jinja" not in result.files  # vLLM's own file stays vLLM's
    # the gateway forwards the engine's prefix, and no other
    assert _guarded(result.files["gateway/nginx.conf"]) == ["/echo/"]
    compose = yaml.safe_load(result.files["compose.yaml"])["services"]["engine"]
    assert compose["entrypoint"][:3] == ["echo-server", "--config", f"{out.resolve()}/echo.toml"]
    assert compose["image"] == "example.org/echo:1"
    assert f"./echo.toml:{out.resolve()}/echo.toml:ro" in compose["volumes"]
    unit = result.files["courselab-engine.service"]
    assert f"ExecStart={d.venv}/bin/echo-server --config" in unit
    assert "courselab.engine echo" in result.files["courselab-engine.def"]
    readme = result.files["README.txt"]
    assert "echo serves wizard-vicuna-13b (awq)" in readme
    assert "echo.toml                    echo-server's settings" in readme
    assert "2a. systemd: echo-server installed in venv" in readme
    assert f"curl -s http://127.0.0.1:{d.engine_port}/health          # 401" in readme

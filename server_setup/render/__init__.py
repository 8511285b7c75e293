"""``render``: the deployable files for one class server, from one settings file.

:func:`render` plans first (:func:`server_setup.plan.plan`); a deployment that does not fit
gets no files. A fitting one gets, in ``output_dir``:

- the engine (:mod:`server_setup.engines`): vLLM's OpenAI server (``vicuna.jinja`` chat
  template), Triton with the vLLM backend (``model_repository/``) or llama-cpp-python's server
  on a CPU host (``Dockerfile``), with the files it asks for;
- the same engine command as ``compose.yaml``, ``courselab-engine.service`` (systemd),
  ``courselab-engine.def`` (Apptainer) and ``serve.sbatch`` (Slurm);
- the gateway in front of it: ``gateway/nginx.conf`` and ``gateway/gateway.js`` (per-student
  keys, limits and log: :mod:`server_setup.gateway.nginx`), run by
  ``courselab-gateway.service`` (systemd) or compose.yaml's ``gateway`` service;
- ``deployment.toml`` (the settings used) and ``README.txt`` (what to run).

No rendered file holds a secret: the students' key hashes and the engine's own key live in
the state dir's ``keys/`` (:mod:`server_setup.gateway.keys`), which the files refer to.

Modules: :mod:`.compose`, :mod:`.systemd`, :mod:`.hpc`, :mod:`.readme`; the engine's command
line and files come from its module in :mod:`server_setup.engines`.

The modules compute each file's values; a config file's layout is a jinja2 template in
``templates/`` (:mod:`server_setup.templates`; an engine's own files, Triton's config.pbtxt,
in ``server_setup/engines/templates/``). compose.yaml is written by yaml.safe_dump
(which quotes what YAML needs quoted), model.json by json.dumps, and the few-line Dockerfile
stays Python.

Example::

    >>> d = load("deployment.toml")
    >>> result = render(d)
    >>> result.plan.fits, sorted(result.files)[:4]
    (True, ['README.txt', 'compose.yaml', 'courselab-engine.def', 'courselab-engine.service'])
    >>> write(result, Path(d.output_dir))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from courselib.atomic import atomic_path
from courselib.errors import CourseError
from server_setup import engines
from server_setup.engines import EngineRun
from server_setup.gateway import nginx
from server_setup.plan import Plan, plan
from server_setup.render import compose, hpc, readme, systemd
from server_setup.settings import Deployment, to_toml

EXECUTABLE = {hpc.BATCH}


@dataclass(frozen=True)
class Rendered:
    """The plan, and the files (relative path -> text) when it fits; none when it does not."""

    plan: Plan
    engine: EngineRun | None = None
    files: dict[str, str] = field(default_factory=dict)


def plan_of(d: Deployment) -> Plan:
    """plan() with the deployment's model, host and serving settings."""
    return plan(
        d.model,
        gpu_mem=d.gpu_mem or None,
        gpus=d.gpus,
        ram=d.ram or None,
        dtype=d.dtype or None,
        max_seqs=d.max_seqs,
        max_model_len=d.max_model_len,
        gpu_memory_utilization=d.gpu_memory_utilization,
    )


def resolved(p: Plan, d: Deployment) -> Deployment:
    """The settings with what every rendered file names filled in: the weights' path, the
    served model name (default: the plan's model) and the install dir."""
    return dataclasses.replace(
        d,
        model_path=d.resolved_model_path(),
        served_model_name=d.served_model_name or p.model.removesuffix(".gguf"),
        install_dir=d.resolved_install_dir(),
    )


def render(d: Deployment) -> Rendered:
    """Plan, then build every file's text (nothing is written: see :func:`write`)."""
    if not d.model:
        raise CourseError(
            "No model to render.", hint="Set model in the settings file, or pass --model."
        )
    p = plan_of(d)
    if not p.fits:
        return Rendered(plan=p)
    engine = engines.choose(p, d.engine)
    used = resolved(p, d)
    install = used.install_dir
    gateway = nginx.GatewayPaths.of(used, install_dir=Path(install))
    run = engine.run(p, used, key_file=str(gateway.engine_env))
    files = {"deployment.toml": to_toml(used)}
    files.update(engine.files(p, run))
    if run.build:
        files[compose.DOCKERFILE] = compose.dockerfile(run)
    files["compose.yaml"] = compose.compose_yaml(run, install_dir=install, d=used, paths=gateway)
    files[systemd.UNIT] = systemd.unit(run, install_dir=install)
    files[systemd.GATEWAY_UNIT] = systemd.gateway_unit(used, paths=gateway)
    files[hpc.DEFINITION] = hpc.definition(run)
    files[hpc.BATCH] = hpc.batch_script(run, used)
    files[nginx.CONF] = nginx.nginx_conf(used, paths=gateway, prefixes=engine.gateway_prefixes)
    files[nginx.JS] = nginx.gateway_js()
    files["README.txt"] = readme.readme(sorted(files), engine=engine, run=run, p=p, d=used)
    return Rendered(plan=p, engine=run, files=files)


def write(result: Rendered, output_dir: Path) -> list[Path]:
    """Write the files into ``output_dir``, replacing a folder an earlier render wrote.

    The folder is built beside the target and renamed into place, so a re-render leaves no
    stale file (a Triton repository after switching to vLLM) and a failure leaves the old one.
    A non-empty folder that render did not write is refused, never deleted.
    """
    if not result.files:
        raise CourseError("Nothing to write: the deployment does not fit.", hint="See plan.")
    output_dir = Path(output_dir).expanduser()
    ours = output_dir / "README.txt"
    if (
        output_dir.exists()
        and any(output_dir.iterdir())
        and not (ours.is_file() and ours.read_text(encoding="utf-8").startswith(readme.MARK))
    ):
        raise CourseError(
            f"{output_dir} holds files render did not write; it replaces only its own folders.",
            hint="Choose an empty or new output_dir (--output-dir deploy-13b).",
        )
    with atomic_path(output_dir, directory=True) as tmp:
        for rel, text in result.files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if rel in EXECUTABLE:
                path.chmod(0o755)
    return [output_dir / rel for rel in result.files]

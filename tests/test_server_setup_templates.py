"""render's jinja2 templates (server_setup/templates.py): strict, every value read, shipped.

The rendered files themselves are checked by their own tools in test_server_setup_render.py
(nginx -t on the gateway's nginx.conf, systemd-analyze, bash -n, Triton's protobuf ...).
Here: the test deployments render every template on disk; each value the code passes is one
its template reads (left out, the render fails: StrictUndefined, never an empty string in a
config file); and a non-editable install carries the templates (pyproject's package data)
and renders the same files as this checkout.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import jinja2
from deployments import CASES, ROOT, deployment

from server_setup.render import render
from server_setup.templates import render_template, template_dirs

# template file -> its name for render_template (jinja2's own Template.name drops the prefix)
NAMES = {
    str(path): f"{name}/{path.relative_to(folder)}"
    for name, folder in template_dirs().items()
    for path in folder.rglob("*.j2")
}
TEMPLATES = set(NAMES.values())
TLS = {"tls_cert": "/etc/ssl/course/cert.pem", "tls_key": "/etc/ssl/course/key.pem"}
# every engine as the render tests have it, plus each branch the templates take: TLS, no
# burst, a gateway off loopback without TLS, a Slurm partition
VARIANTS = [(case, {}) for case in sorted(CASES)] + [
    ("vllm", {**TLS, "rate_burst": 0, "slurm_partition": "gpu"}),
    ("triton", TLS),
    ("llamacpp", {"gateway_host": "0.0.0.0", "rate_burst": 0, "chat_format": "vicuna"}),
]


def _rendered_with_values(tmp_path: Path, monkeypatch) -> dict[str, list[dict]]:
    """Template name -> the values each render of the variants passed it."""
    calls: dict[str, list[dict]] = defaultdict(list)
    original = jinja2.Template.render

    def spy(self: jinja2.Template, *args, **kwargs) -> str:
        if self.filename in NAMES:
            calls[NAMES[self.filename]].append(dict(*args, **kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Template, "render", spy)
    for i, (case, extra) in enumerate(VARIANTS):
        assert render(deployment(tmp_path / str(i), case, **extra)).files
    monkeypatch.undo()  # the checks that follow render again: they are not to be recorded
    return calls


def _fails_without(name: str, values: dict, key: str) -> bool:
    try:
        render_template(name, **{k: v for k, v in values.items() if k != key})
    except jinja2.UndefinedError:
        return True
    return False


def test_every_template_is_rendered_and_reads_every_value_it_is_given(tmp_path, monkeypatch):
    assert "gateway/nginx.conf.j2" in TEMPLATES
    calls = _rendered_with_values(tmp_path, monkeypatch)
    assert set(calls) == TEMPLATES, "templates no test deployment renders"
    for name, renders in sorted(calls.items()):
        for key in sorted(set().union(*renders)):
            # a value the template reads only on some branch (TLS) fails on that one
            assert any(_fails_without(name, values, key) for values in renders), (
                f"{name} renders without {key!r}: a value it never reads, or a lax undefined"
            )


def test_an_installed_package_has_the_templates_and_renders_the_same_files(tmp_path):
    """pip installs a copy of the project (a wheel, as from PyPI: not editable) into a folder,
    and a Python that imports server_setup from there renders what this checkout renders."""
    src, site = tmp_path / "src", tmp_path / "site"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    for package in ("courselib", "autograder", "server_setup"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--no-compile", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    shipped = {str(p.relative_to(site / "server_setup")) for p in site.rglob("*.j2")}
    assert {n.replace("/", "/templates/", 1) for n in TEMPLATES} == shipped

    deployments = [deployment(tmp_path / str(i), c, **e) for i, (c, e) in enumerate(VARIANTS)]
    script = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import server_setup\n"
        "from server_setup.render import render\n"
        "from server_setup.settings import Deployment\n"
        "assert server_setup.__file__.startswith(sys.argv[1]), server_setup.__file__\n"
        "print(json.dumps([render(Deployment(**d)).files for d in json.loads(sys.argv[2])]))\n"
    )
    as_dicts = json.dumps([dataclasses.asdict(d) for d in deployments])
    run = subprocess.run(
        [sys.executable, "-c", script, str(site), as_dicts],
        cwd=tmp_path,  # not the checkout: its folder would come first on sys.path
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [render(d).files for d in deployments]

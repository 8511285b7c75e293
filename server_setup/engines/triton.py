"""Triton Inference Server with the vLLM backend: vLLM's engine, and so vLLM's plan.

Triton runs the same vLLM engine with the same engine arguments (:func:`vllm_engine_args`),
so it inherits vLLM's memory, dtypes and report; plan never picks it, the settings name it
(``engine = "triton"``). Its model repository (docs/facts.md#triton-vllm)::

    model_repository/<name>/config.pbtxt   backend "vllm", one KIND_MODEL instance
    model_repository/<name>/1/model.json   vLLM's engine arguments

KIND_MODEL leaves GPU placement to vLLM (tensor parallel included); Triton would otherwise
start one instance per GPU. The model is called by its folder name, so the served name is the
folder. Clients POST ``/v2/models/<name>/generate`` with ``text_input``: Triton applies no chat
template, the client renders the Vicuna prompt (courselib.chat.vicuna.render_vicuna).

Triton has no option to take its key from a file: its ``--http-restricted-api`` key would sit
in its command line, readable by every local user (docs/facts.md#engine-key), so it runs
without one.

Example::

    >>> sorted(model_repository(plan_awq_13b, model_path="/srv/m", name="course-chat"))
    ['model_repository/course-chat/1/model.json', 'model_repository/course-chat/config.pbtxt']
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from server_setup.engines.base import EngineRun
from server_setup.engines.vllm import OFFLINE_ENV, VLLM, vllm_engine_args
from server_setup.templates import render_template

if TYPE_CHECKING:
    from server_setup.plan import Plan
    from server_setup.settings import Deployment

MODEL_REPOSITORY = "model_repository"
"""Triton's model repository folder, in the install dir."""


def config_pbtxt(name: str) -> str:
    """config.pbtxt in protobuf text format (Triton's ``inference.ModelConfig``).

    Laid out by ``templates/config.pbtxt.j2``.
    """
    # quoted and escaped as a string literal (json.dumps)
    return render_template("engines/config.pbtxt.j2", name=json.dumps(name))


def model_json(p: Plan, *, model_path: str) -> str:
    """1/model.json: the same engine arguments ``vllm serve`` gets, as vLLM's field names."""
    args = vllm_engine_args(p, model_path=model_path, name="")
    del args["served_model_name"]  # Triton names the model after its folder
    return json.dumps(args, indent=2) + "\n"


def model_repository(p: Plan, *, model_path: str, name: str) -> dict[str, str]:
    """Relative path -> text of the repository's two files."""
    root = f"{MODEL_REPOSITORY}/{name}"
    return {
        f"{root}/config.pbtxt": config_pbtxt(name),
        f"{root}/1/model.json": model_json(p, model_path=model_path),
    }


class Triton(VLLM):
    """Triton: vLLM's engine (memory, dtypes, report) behind Triton's own HTTP API."""

    name = "triton"
    label = "Triton"
    plans_as = VLLM.name
    health_path = "/v2/health/ready"
    gateway_prefixes = ("/v2/models/",)  # the generate endpoints
    installed = "Triton installed in triton_dir"

    def run(self, p: Plan, d: Deployment, *, key_file: str) -> EngineRun:
        """``key_file`` is not used: Triton would show its key to every local user (ps)."""
        # getopt-style --flag=value, as Triton documents them; gRPC and metrics are off so
        # nothing listens beyond the one loopback HTTP port
        argv = [
            "tritonserver",
            f"--model-repository={PurePosixPath(d.install_dir) / MODEL_REPOSITORY}",
            f"--http-address={d.engine_host}",
            f"--http-port={d.engine_port}",
            "--allow-grpc=false",
            "--allow-metrics=false",
        ]
        return EngineRun(
            self.name,
            tuple(argv),
            gpus=max(p.gpus, 1),
            image=d.triton_image,
            host_program=str(PurePosixPath(d.triton_dir) / "bin" / "tritonserver"),
            model_path=d.model_path,
            name=d.served_model_name,
            files=(MODEL_REPOSITORY,),
            env=dict(OFFLINE_ENV),
        )

    def files(self, p: Plan, run: EngineRun) -> dict[str, str]:
        return model_repository(p, model_path=run.model_path, name=run.name)

    def describe(self, rel: str) -> str | None:
        if rel.startswith(MODEL_REPOSITORY + "/"):
            return "Triton model repository (config.pbtxt: vllm backend; 1/model.json: engine args)"
        return None

    def readme_check(self, d: Deployment, run: EngineRun) -> list[str]:
        """A generate request: Triton has no OpenAI model list to GET."""
        return [
            f"     curl -s -X POST http://{d.engine_host}:{d.engine_port}/v2/models/{run.name}"
            '/generate -d \'{"text_input": "USER: Hi ASSISTANT:", '
            '"parameters": {"max_tokens": 16}}\''
        ]

    def readme_notes(self) -> list[str]:
        return [
            "   Triton's generate endpoint takes a rendered prompt (no chat template). Triton",
            "   takes no key from a file (only --http-restricted-api, on its command line, which",
            "   any local user can read with ps): its loopback port is open to the users of this",
            "   host, so keep untrusted users off it.",
        ]


ENGINE = Triton()

"""Triton Inference Server's model repository for the vLLM backend (docs/facts.md#triton-vllm).

Layout::

    model_repository/<name>/config.pbtxt   backend "vllm", one KIND_MODEL instance
    model_repository/<name>/1/model.json   vLLM's engine arguments

KIND_MODEL leaves GPU placement to vLLM (tensor parallel included); Triton would otherwise
start one instance per GPU. The model is called by its folder name, so the served name is the
folder. Clients POST ``/v2/models/<name>/generate`` with ``text_input``: Triton applies no chat
template, the client renders the Vicuna prompt (courselib.chat.vicuna.render_vicuna).

Example::

    >>> files = model_repository(plan_awq_13b, model_path="/srv/m", name="course-chat")
    >>> sorted(files)
    ['model_repository/course-chat/1/model.json', 'model_repository/course-chat/config.pbtxt']
"""

from __future__ import annotations

import json

from server_setup.plan import Plan
from server_setup.render.engine import MODEL_REPOSITORY, vllm_engine_args
from server_setup.templates import render_template


def config_pbtxt(name: str) -> str:
    """config.pbtxt in protobuf text format (Triton's ``inference.ModelConfig``).

    Laid out by ``templates/config.pbtxt.j2``.
    """
    # quoted and escaped as a string literal (json.dumps)
    return render_template("render/config.pbtxt.j2", name=json.dumps(name))


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

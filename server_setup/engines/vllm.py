"""vLLM's OpenAI server (``vllm serve``): fp16/bf16/fp32/AWQ/GPTQ on GPUs, many sequences at once.

vLLM's engine arguments are built once (:func:`vllm_engine_args`) and become both the
``vllm serve`` flags and Triton's ``model.json`` (:mod:`.triton` runs the same engine). The
flags used are listed in docs/facts.md#vllm-serve-flags. The server requires the engine's key
from its environment (``VLLM_API_KEY``, from the state dir's ``keys/engine.env``), never from
its command line (docs/facts.md#engine-key).

Example::

    >>> d = load(None, overrides={"model": "wizard-vicuna-13b", "dtype": "awq",
    ...     "gpu_mem": "40GiB", "model_path": "/srv/models/wizard-vicuna-13b-awq"})
    >>> run = ENGINE.run(plan_of(d), resolved(plan_of(d), d), key_file="/k/engine.env")
    >>> run.argv[:3], run.gpus
    (('vllm', 'serve', '/srv/models/wizard-vicuna-13b-awq'), 1)
    >>> " ".join(run.argv[3:9])
    '--served-model-name wizard-vicuna-13b --dtype float16 --quantization awq'
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from courselib.chat.vicuna import VICUNA_JINJA
from courselib.memory.estimate import Estimate, estimate_inference
from server_setup.engines.base import Engine, EngineRun, flags

if TYPE_CHECKING:
    from server_setup.plan import Plan
    from server_setup.settings import Deployment

CHAT_TEMPLATE = "vicuna.jinja"
"""The Vicuna chat template file vLLM loads (--chat-template), in the install dir."""

# plan's dtype -> (vLLM --dtype, --quantization); AWQ/GPTQ kernels compute in fp16
VLLM_DTYPES: dict[str, tuple[str, str | None]] = {
    "fp16": ("float16", None),
    "bf16": ("bfloat16", None),
    "fp32": ("float32", None),
    "awq": ("float16", "awq"),
    "gptq": ("float16", "gptq"),
}

# vLLM and Triton cache compiled kernels under $HOME unless told where; Hub lookups are off
# because the weights are a local path (a classroom server must not download at start)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def vllm_engine_args(p: Plan, *, model_path: str, name: str) -> dict[str, Any]:
    """vLLM's engine arguments (snake_case) for the plan: the same for vllm serve and Triton.

    Example: AWQ on one GPU -> ``{"model": ..., "served_model_name": ..., "dtype": "float16",
    "quantization": "awq", "max_model_len": 2048, "max_num_seqs": 16,
    "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1}``
    """
    dtype, quantization = VLLM_DTYPES[p.dtype]
    args: dict[str, Any] = {"model": model_path, "served_model_name": name, "dtype": dtype}
    if quantization:
        args["quantization"] = quantization
    args.update(
        max_model_len=p.max_model_len,
        max_num_seqs=p.max_seqs,
        gpu_memory_utilization=p.utilization,
        tensor_parallel_size=max(p.gpus, 1),
    )
    return args


class VLLM(Engine):
    """vLLM: a paged KV cache for ``max_seqs`` sequences, tensor parallel over the GPUs."""

    name = "vllm"
    label = "vLLM"
    plans_as = "vllm"
    needs = "fp16/bf16/awq/gptq"
    batches = True
    tensor_parallel = True
    utilization_flag = "--gpu-memory-utilization"
    out_of_memory = (
        "vLLM would die with a CUDA out-of-memory error or 'No available memory for the cache "
        "blocks'"
    )
    health_path = "/v1/models"
    # the OpenAI API, and vLLM's tokenizer (courselib's remote backend counts prompt tokens)
    gateway_prefixes: tuple[str, ...] = ("/v1/", "/tokenize")
    installed = "vLLM installed in venv"

    def serves(self, dtype: str) -> bool:
        return dtype in VLLM_DTYPES

    def estimate(
        self,
        model: str | os.PathLike[str],
        *,
        dtype: str,
        gpus: int,
        max_seqs: int,
        max_model_len: int,
    ) -> Estimate:
        return estimate_inference(
            model,
            precision=dtype,
            n_ctx=max_model_len,
            batch=max_seqs,
            engine="vllm",
            tensor_parallel=max(gpus, 1),
        )

    def run(self, p: Plan, d: Deployment, *, key_file: str) -> EngineRun:
        args = vllm_engine_args(p, model_path=d.model_path, name=d.served_model_name)
        del args["model"]  # vllm serve takes it as the positional model tag
        argv = ["vllm", "serve", d.model_path, *flags(args, style="dash")]
        argv += ["--host", d.engine_host, "--port", str(d.engine_port)]
        argv += ["--chat-template", str(PurePosixPath(d.install_dir) / CHAT_TEMPLATE)]
        return EngineRun(
            self.name,
            tuple(argv),
            gpus=max(p.gpus, 1),
            image=d.vllm_image,
            host_program=str(PurePosixPath(d.venv) / "bin" / "vllm"),
            model_path=d.model_path,
            name=d.served_model_name,
            files=(CHAT_TEMPLATE,),
            env=dict(OFFLINE_ENV),
            key_file=key_file,
        )

    def files(self, p: Plan, run: EngineRun) -> dict[str, str]:
        # courselib's own template: the server formats chats exactly as the labs do
        return {CHAT_TEMPLATE: VICUNA_JINJA + "\n"}

    def describe(self, rel: str) -> str | None:
        if rel == CHAT_TEMPLATE:
            return "the Vicuna v1.1 chat template vLLM applies (--chat-template)"
        return None


ENGINE = VLLM()

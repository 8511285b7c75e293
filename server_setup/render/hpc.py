"""University HPC clusters: an Apptainer definition and a Slurm batch script.

Clusters run containers with Apptainer (formerly Singularity), not Docker. The definition
starts from the same image compose uses (vLLM's or Triton's; the llama.cpp one is built on the
base image), and the batch script runs the same engine command inside it with ``--nv`` (the
host's NVIDIA driver) and the model bound read-only. The engine listens on the compute node's
loopback: reach it with an SSH tunnel through the login node. Its API key comes from the
state dir's ``keys/engine.env`` (``--env-file``): other users of a shared compute node reach
its loopback port too, so a request needs ``Authorization: Bearer`` that key.

Example (vLLM on 2 GPUs, abridged)::

    #SBATCH --gres=gpu:2
    exec apptainer exec --nv --cleanenv --bind /srv/models/m:/srv/models/m:ro ... \\
        /opt/deploy/courselab-engine.sif vllm serve /srv/models/m ... --tensor-parallel-size 2
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from server_setup.engines import EngineRun
from server_setup.settings import Deployment
from server_setup.templates import render_template

DEFINITION = "courselab-engine.def"
IMAGE = "courselab-engine.sif"
BATCH = "serve.sbatch"


def definition(run: EngineRun) -> str:
    """courselab-engine.def: build with ``apptainer build courselab-engine.sif <this file>``.

    Laid out by ``templates/courselab-engine.def.j2``.
    """
    return render_template(
        "render/courselab-engine.def.j2",
        run=run,
        environment={name: shlex.quote(value) for name, value in run.env.items()},
    )


def batch_script(run: EngineRun, d: Deployment) -> str:
    """serve.sbatch: one Slurm job that runs the engine until its time limit.

    Laid out by ``templates/serve.sbatch.j2``.
    """
    install = PurePosixPath(d.resolved_install_dir())
    binds = [f"{run.model_path}:{run.model_path}:ro"]
    binds += [f"{install / f}:{install / f}:ro" for f in run.files]
    apptainer = ["apptainer", "exec"]
    if run.gpus:
        apptainer.append("--nv")
    # --cleanenv: the job's environment (a user's PYTHONPATH, HF_HOME ...) stays outside
    apptainer.append("--cleanenv")
    if run.key_file:
        apptainer += ["--env-file", run.key_file]  # the key, not in the command line
    for bind in binds:
        apptainer += ["--bind", bind]
    apptainer.append(str(install / IMAGE))
    return render_template(
        "render/serve.sbatch.j2",
        run=run,
        d=d,
        log=install / "courselab-engine-%j.log",
        command=" \\\n    ".join([shlex.join(apptainer), shlex.join(run.argv)]),
    )

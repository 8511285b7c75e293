"""The machine a deployment runs on: its GPUs or, on a CPU host, its RAM (for ``plan``).

Sizes are given like ``40GiB``, ``48GB``, ``80G`` or ``16384MiB`` (G, GB and GiB all mean
2**30 bytes here: nvidia-smi and vLLM count GPU memory in MiB/GiB, and a "40 GB" A100 has
40 GiB). Nothing given: the GPUs torch sees (or ``nvidia-smi`` lists), else this machine's RAM.

Example::

    >>> parse_size("40GiB") == parse_size("40GB") == 40 * 2**30
    True
    >>> Host(kind="gpu", device_bytes=parse_size("80GiB"), count=2).describe()
    '2 x 80.0 GiB GPU'
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from courselib.errors import CourseError

_UNITS = {"": 2**30, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """Bytes of a size such as "40GiB", "48GB", "80G", "512MiB" (a bare number is GiB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise CourseError(
            f"Cannot read the size {text!r}.", hint="Write it like 40GiB, 48GB or 16384MiB."
        )
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class Host:
    """Where the engine runs: ``count`` GPUs of ``device_bytes`` each, or RAM (count 1)."""

    kind: Literal["gpu", "cpu"]
    device_bytes: int
    count: int = 1
    source: str = "given"
    """How the sizes were found: given, torch.cuda, nvidia-smi or /proc/meminfo."""

    def describe(self) -> str:
        size = f"{self.device_bytes / 2**30:.1f} GiB"
        if self.kind == "cpu":
            return f"a CPU host with {size} of RAM"
        return f"{self.count} x {size} GPU"


def _torch_gpus() -> list[int]:
    try:
        import torch  # heavy: only when no size is given
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return [int(p.total_memory) for p in props]


def _nvidia_smi_gpus() -> list[int]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(float(line)) * 2**20 for line in out.stdout.split() if line.strip()]  # MiB


def meminfo_bytes(path: Path = Path("/proc/meminfo")) -> int | None:
    """RAM a new process can have now (MemAvailable), or None where there is no /proc."""
    try:
        text = path.read_text()
    except OSError:
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) * 1024 if found else None


def detect_host(
    *, gpu_mem: str | None = None, gpus: int | None = None, ram: str | None = None
) -> Host:
    """The host described by the options, else found on this machine (GPUs before RAM).

    Example: ``detect_host(gpu_mem="40GiB", gpus=2)`` is two 40 GiB GPUs; ``detect_host(
    ram="16GiB")`` a CPU host with 16 GiB of RAM.
    """
    if gpu_mem is not None:
        return Host(kind="gpu", device_bytes=parse_size(gpu_mem), count=gpus or 1)
    if ram is not None:
        return Host(kind="cpu", device_bytes=parse_size(ram))
    for source, found in (("torch.cuda", _torch_gpus), ("nvidia-smi", _nvidia_smi_gpus)):
        sizes = found()
        if sizes:
            return Host(kind="gpu", device_bytes=min(sizes), count=gpus or 1, source=source)
    available = meminfo_bytes()
    if available is None:
        raise CourseError(
            "No GPU found and this system does not say how much RAM is free.",
            hint="Say what the server has: --gpu-mem 40GiB --gpus 1, or --ram 16GiB.",
        )
    return Host(kind="cpu", device_bytes=available, source="/proc/meminfo")

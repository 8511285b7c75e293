"""The course's own settings (data dir, threads, the class server), read by :mod:`courselib.config`.

Each setting's environment variable is ``COURSELAB_<NAME>``; the config file is
``$COURSELAB_CONFIG`` if set, else ``~/.config/courselab/config.toml`` (a missing file is fine).

Example::

    >>> resolve("data_dir", None)           # env COURSELAB_DATA_DIR, then config, then default
    PosixPath('/home/me/.cache/courselab')
    >>> resolve("threads", 4)                # an explicit argument always wins
    4

Config file example (``~/.config/courselab/config.toml``)::

    data_dir = "/scratch/courselab"
    threads = 2
    server_url = "http://gpu-host:8000/v1"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courselib.config import Schema, setting
from courselib.errors import CourseError


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "courselab"


def _default_threads() -> int:
    # llama.cpp is memory-bound when decoding: physical cores, not hyperthreads, help.
    return (
        max(1, (os.cpu_count() or 2) // 2) if (os.cpu_count() or 1) > 2 else (os.cpu_count() or 1)
    )


@dataclass(frozen=True)
class CourseSettings:
    """Every course setting with its doc and default (``python -m courselib --help`` lists them)."""

    data_dir: Path = setting(
        "Where built course models (HF checkpoints, GGUFs) are cached.", factory=_default_data_dir
    )
    threads: int = setting("CPU threads for llama.cpp and torch.", factory=_default_threads)
    server_url: str = setting(
        "Base URL of the class's OpenAI-compatible inference server (Lab 02).",
        "http://127.0.0.1:8000/v1",
    )
    api_key: str = setting("Your personal API key for the class server (Lab 02).", "")


COURSE = Schema(CourseSettings, env_prefix="COURSELAB_")
SETTINGS = COURSE.fields
"""Each setting's name -> its field (doc and default in ``metadata`` and ``default``)."""


def config_path() -> Path:
    """The TOML config file that is read (it need not exist)."""
    env = os.environ.get("COURSELAB_CONFIG")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "courselab" / "config.toml"


def resolve(name: str, value: Any = None) -> Any:
    """The value of setting ``name``: ``value`` if not None, else env, else config, else default."""
    return COURSE.resolve(name, arg=value, path=config_path())


def data_dir(value: str | os.PathLike[str] | None = None) -> Path:
    """The course data directory (see :data:`SETTINGS`), created if missing."""
    path = Path(resolve("data_dir", value))
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe() -> str:
    """A table of every setting, its environment variable and current value (for ``--help``).

    A setting that cannot be read shows ``?``, and the mistake is listed once below the table:
    ``--help`` still answers when the config file or a variable is wrong.
    """
    lines, problems = [f"config file: {config_path()}"], []
    for name, f in SETTINGS.items():
        try:
            current = resolve(name)
            shown = "***" if name == "api_key" and current else str(current)
        except CourseError as exc:
            shown = "?"
            if exc.message not in problems:  # one broken file would say it for every setting
                problems.append(exc.message)
        lines.append(f"  {name:<11} {COURSE.env_name(name):<22} {shown:<40} {f.metadata['doc']}")
    return "\n".join(lines + [f"cannot read: {problem}" for problem in problems])

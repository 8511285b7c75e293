"""Course settings with one precedence: argument > environment variable > config file > default.

Each setting is declared once in :data:`SETTINGS` with its environment variable, its key in
the TOML config file and its default. The config file is ``$COURSELAB_CONFIG`` if set, else
``~/.config/courselab/config.toml``; a missing file is fine.

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
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courselib.errors import CourseError


def _default_threads() -> int:
    # llama.cpp is memory-bound when decoding: physical cores, not hyperthreads, help.
    return (
        max(1, (os.cpu_count() or 2) // 2) if (os.cpu_count() or 1) > 2 else (os.cpu_count() or 1)
    )


@dataclass(frozen=True)
class Setting:
    """One documented setting: where it is read from and how a string becomes a value."""

    name: str
    env: str
    default: Callable[[], Any]
    parse: Callable[[str], Any]
    doc: str


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting(
            "data_dir",
            "COURSELAB_DATA_DIR",
            lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "courselab",
            lambda v: Path(v).expanduser(),
            "Where built course models (HF checkpoints, GGUFs) are cached.",
        ),
        Setting(
            "threads",
            "COURSELAB_THREADS",
            _default_threads,
            int,
            "CPU threads for llama.cpp and torch.",
        ),
        Setting(
            "server_url",
            "COURSELAB_SERVER_URL",
            lambda: "http://127.0.0.1:8000/v1",
            str,
            "Base URL of the class's OpenAI-compatible inference server (Lab 02).",
        ),
        Setting(
            "api_key",
            "COURSELAB_API_KEY",
            lambda: "",
            str,
            "Your personal API key for the class server (Lab 02).",
        ),
    ]
}


def config_path() -> Path:
    """The TOML config file that is read (it need not exist)."""
    env = os.environ.get("COURSELAB_CONFIG")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "courselab" / "config.toml"


def _config_file() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CourseError(
            f"The course config file {path} is not valid TOML ({exc}).",
            hint="Fix or delete that file, or point COURSELAB_CONFIG at another one.",
        ) from None


def resolve(name: str, value: Any = None) -> Any:
    """The value of setting ``name``: ``value`` if not None, else env, else config, else default."""
    setting = SETTINGS[name]
    if value is not None:
        return setting.parse(str(value)) if isinstance(setting.default(), Path) else value
    raw = os.environ.get(setting.env)
    if raw not in (None, ""):
        try:
            return setting.parse(raw)
        except ValueError:
            raise CourseError(
                f"Environment variable {setting.env}={raw!r} is not valid.",
                hint=f"{setting.doc} Unset it or give a valid value.",
            ) from None
    config = _config_file()
    if name in config:
        return setting.parse(str(config[name]))
    return setting.default()


def data_dir(value: str | os.PathLike[str] | None = None) -> Path:
    """The course data directory (see :data:`SETTINGS`), created if missing."""
    path = Path(resolve("data_dir", value))
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe() -> str:
    """A table of every setting, its environment variable and current value (for ``--help``)."""
    lines = [f"config file: {config_path()}"]
    for s in SETTINGS.values():
        current = resolve(s.name)
        if s.name == "api_key" and current:
            current = "***"
        lines.append(f"  {s.name:<11} {s.env:<22} {current!s:<40} {s.doc}")
    return "\n".join(lines)

"""The one settings mechanism of the course, the autograder and server_setup.

Every setting is read from, in order (the first that is given wins)::

    argument > environment variable > config file > default

- argument: a keyword in Python (``resolve("threads", 4)``, ``load(..., overrides=...)``) or
  its command-line flag (``--max-seqs 8``); None means "not given".
- environment variable: ``<PREFIX><NAME>`` (``COURSELAB_THREADS``, ``COURSELAB_SERVER_MAX_SEQS``,
  ``COURSELAB_GRADE_CELL_TIMEOUT``); an empty variable counts as unset.
- config file: the tool's TOML file (``~/.config/courselab/config.toml``, a deployment's
  settings file, a course's ``autograder.toml`` ``[grade]`` table); a key the tool does not
  know is an error, so a typo never falls back to the default without a word.
- default: written once, beside the setting's doc, in the settings class.

A settings class is a dataclass whose settings are declared with :func:`setting`; a
:class:`Schema` (the class, its environment prefix and its file's table) loads it, renders
its command-line flags (the defaults in ``--help`` come from the fields) and writes its
commented TOML file. Strings are parsed by the field's type: ``int``, ``float``, ``bool``,
``str``, ``Path`` or a ``Literal`` of strings; a wrong value is a
:class:`~courselib.errors.CourseError` naming where it came from and what is allowed.

Each tool keeps its own names and file, in one :class:`Schema`: the course's in
:data:`courselib.settings.COURSE` (``COURSELAB_<NAME>``, ``~/.config/courselab/config.toml``),
the autograder's in ``autograder.course.GRADE`` (``COURSELAB_GRADE_<NAME>``, a course's
``autograder.toml``), server_setup's in ``server_setup.settings.SCHEMA``
(``COURSELAB_SERVER_<NAME>``, a deployment's settings file).

Example::

    @dataclass(frozen=True)
    class Limits:
        seconds: float = setting("Seconds a job may run.", 60.0)
        mode: Literal["fast", "safe"] = setting("How jobs run.", "safe")

    LIMITS = Schema(Limits, env_prefix="MYTOOL_")
    LIMITS.load(args={"seconds": None}, environ={"MYTOOL_SECONDS": "5"}).seconds   # 5.0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, get_args, get_origin, get_type_hints

from courselib.errors import CourseError

PRECEDENCE = "argument > environment variable > config file > default"
"""The order every setting is read in, as ``--help`` and the generated files say it."""

T = TypeVar("T")
_SCALARS: tuple[type, ...] = (bool, int, float, str, Path)


def setting(
    doc: str,
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    flag: str | None = None,
) -> Any:
    """A dataclass field that is a setting: its doc and default, written once.

    ``factory`` computes a default that depends on the machine (the CPU count, $HOME);
    ``flag`` names the command-line flag when ``--<name-with-dashes>`` is not the one.
    """
    metadata = {"doc": doc, "flag": flag}
    if (factory is None) == (default is dataclasses.MISSING):
        raise TypeError(f"setting {doc!r}: give a default or a factory, not both or neither")
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def toml_value(value: Any) -> str:
    """A bool, number, string or path as TOML (a JSON string is a valid TOML basic string)."""
    return json.dumps(str(value) if isinstance(value, Path) else value)


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML document at ``path``; a file that is not TOML is a CourseError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CourseError(
            f"{path} is not valid TOML ({exc}).", hint="Fix that line of the file, or delete it."
        ) from None


def _choices(kind: Any) -> tuple[str, ...] | None:
    """The allowed strings of a ``Literal[...]`` type, None for any other type."""
    return get_args(kind) if get_origin(kind) is Literal else None


def _type_name(kind: Any) -> str:
    """What a value of a scalar type must be, as the error message says it."""
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        Path: "a path",
    }[kind]


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _coerce(kind: Any, raw: Any) -> Any:
    """``raw`` (a string from a flag or the environment, or a TOML/Python value) as ``kind``;
    ValueError if it is not one."""
    choices = _choices(kind)
    if choices is not None:
        if raw in choices:
            return raw
    elif kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
            return raw.strip().lower() in _TRUE
    elif isinstance(raw, bool):
        pass  # True is an int to Python, never a count or a name to a person
    elif kind is int:
        if isinstance(raw, int | str):
            return int(raw)
    elif kind is float:
        if isinstance(raw, int | float | str):
            return float(raw)
    elif kind is str:
        if isinstance(raw, str | int | float | os.PathLike):  # gpu_mem = 40 reads as "40"
            return str(raw)
    elif kind is Path and isinstance(raw, str | os.PathLike):
        return Path(raw).expanduser()
    raise ValueError(raw)


@dataclass(frozen=True)
class Schema(Generic[T]):
    """How one tool reads its settings class ``cls``.

    ``env_prefix`` + the upper-case name is each setting's environment variable; ``section``
    is the TOML table holding the settings in the tool's file (None: the top level);
    ``missing_file_hint`` (with ``{path}``) makes a named file that does not exist an error,
    else a missing file is read as empty.
    """

    cls: type[T]
    env_prefix: str
    section: str | None = None
    missing_file_hint: str | None = None
    fields: dict[str, dataclasses.Field[Any]] = field(init=False, repr=False, compare=False)
    types: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hints = get_type_hints(self.cls)
        found = {f.name: f for f in dataclasses.fields(self.cls) if "doc" in f.metadata}  # type: ignore[arg-type]
        for name in found:
            choices = _choices(hints[name])
            if hints[name] not in _SCALARS and not (
                choices and all(isinstance(c, str) for c in choices)
            ):
                raise TypeError(f"{self.cls.__name__}.{name}: {hints[name]} cannot be parsed")
        object.__setattr__(self, "fields", found)
        object.__setattr__(self, "types", {name: hints[name] for name in found})

    # --- names

    def env_name(self, name: str) -> str:
        """``max_seqs`` -> ``<PREFIX>MAX_SEQS``."""
        return self.env_prefix + name.upper()

    def flag(self, name: str) -> str:
        """The command-line flag of setting ``name``: ``--max-seqs`` unless the field names one."""
        return self.fields[name].metadata["flag"] or "--" + name.replace("_", "-")

    def default(self, name: str) -> Any:
        """The field's default (a factory's is computed now)."""
        f = self.fields[name]
        return f.default_factory() if callable(f.default_factory) else f.default

    # --- reading

    def parse(self, name: str, raw: Any, *, source: str) -> Any:
        """``raw`` from ``source`` as setting ``name``'s type, else a CourseError saying both."""
        kind = self.types[name]
        try:
            return _coerce(kind, raw)
        except ValueError:
            pass
        choices = _choices(kind)
        if choices is not None:
            raise CourseError(
                f"Unknown {name} {raw!r} (from {source}).", hint=f"Use one of {', '.join(choices)}."
            ) from None
        raise CourseError(
            f"{name} = {raw!r} is not {_type_name(kind)} (from {source}).",
            hint=f"{self.fields[name].metadata['doc']} Give {_type_name(kind)}.",
        ) from None

    def file_values(self, path: str | os.PathLike[str] | None) -> dict[str, Any]:
        """The settings in the tool's file at ``path`` (its ``section``); unknown keys are an error."""
        if path is None:
            return {}
        path = Path(path)
        if not path.is_file():
            if self.missing_file_hint is None:
                return {}
            raise CourseError(
                f"Settings file {path} does not exist.",
                hint=self.missing_file_hint.format(path=path),
            )
        data: Any = read_toml(path)
        where = str(path)
        if self.section is not None:
            data = data.get(self.section, {})
            where = f"{path} [{self.section}]"
            if not isinstance(data, dict):
                raise CourseError(f"{where} is not a table.", hint=f"Write it as [{self.section}].")
        unknown = sorted(set(data) - set(self.fields))
        if unknown:  # a typo would otherwise fall back to the default without a word
            raise CourseError(
                f"{where}: unknown setting(s) {', '.join(unknown)}.",
                hint="Known settings: " + ", ".join(self.fields) + ".",
            )
        return data

    def resolve(
        self,
        name: str,
        *,
        arg: Any = None,
        environ: Mapping[str, str] | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> Any:
        """One setting by :data:`PRECEDENCE`; the file at ``path`` is read only when neither
        ``arg`` nor the environment gives it (a broken file then stops only what needs it)."""
        return self._pick(name, arg, environ, lambda: self.file_values(path), str(path))

    def _pick(
        self,
        name: str,
        arg: Any,
        environ: Mapping[str, str] | None,
        file: Callable[[], Mapping[str, Any]],
        file_label: str,
    ) -> Any:
        env = os.environ if environ is None else environ
        if arg is not None:
            return self.parse(name, arg, source=f"argument {name}")
        raw = env.get(self.env_name(name), "")
        if raw != "":
            return self.parse(name, raw, source=f"environment variable {self.env_name(name)}")
        values = file()
        if name in values:
            return self.parse(name, values[name], source=file_label)
        return self.default(name)

    def load(
        self,
        *,
        args: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        path: str | os.PathLike[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> T:
        """Every setting by :data:`PRECEDENCE`: ``args`` (None = not given), ``environ``
        (default ``os.environ``), the file at ``path`` (None: none). ``extra``: values of the
        class's fields that are not settings, passed through as they are."""
        unknown = sorted(set(args or {}) - set(self.fields))
        if unknown:  # a caller's typo, not a user's
            raise TypeError(f"{self.cls.__name__} has no setting {', '.join(unknown)}")
        file = self.file_values(path)  # read once, and checked even when flags give everything
        values = {
            name: self._pick(name, (args or {}).get(name), environ, lambda: file, str(path))
            for name in self.fields
        }
        return self.cls(**values, **(extra or {}))

    # --- command line

    def help(self, name: str) -> str:
        """Setting ``name``'s doc, its default and its environment variable (for ``--help``)."""
        return (
            f"{self.fields[name].metadata['doc']} "
            f"(default {toml_value(self.default(name))}; env {self.env_name(name)})"
        )

    def add_arguments(
        self,
        parser: argparse.ArgumentParser,
        *,
        only: tuple[str, ...] | None = None,
        title: str = "settings",
    ) -> None:
        """One flag per setting (or per setting in ``only``) in a group of ``parser``.

        Each flag's value stays a string until :meth:`flag_values` parses it, so a wrong value
        is the same two-line mistake as in the environment or the file; a bool is
        ``--flag``/``--no-flag``. Not given: None, so the environment, file or default decide.
        """
        group = parser.add_argument_group(f"{title} ({PRECEDENCE})")
        for name in only or tuple(self.fields):
            kind = self.types[name]
            text = self.help(name).replace("%", "%%")  # argparse expands %(...)s in help
            if kind is bool:
                group.add_argument(
                    self.flag(name),
                    dest=name,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=text,
                )
                continue
            choices = _choices(kind)
            group.add_argument(
                self.flag(name),
                dest=name,
                default=None,
                metavar="{" + ",".join(choices) + "}" if choices else kind.__name__.upper(),
                help=text,
            )

    def flag_values(self, namespace: argparse.Namespace) -> dict[str, Any]:
        """The settings given as flags in ``namespace``, parsed (errors name the flag)."""
        return {
            name: self.parse(name, getattr(namespace, name), source=self.flag(name))
            for name in self.fields
            if getattr(namespace, name, None) is not None
        }

    # --- files

    def to_toml(self, values: T) -> str:
        """Every setting of ``values`` as ``name = value`` lines (its ``section`` first)."""
        lines = [f"[{self.section}]"] if self.section else []
        lines += [f"{name} = {toml_value(getattr(values, name))}" for name in self.fields]
        return "\n".join(lines) + "\n"

    def commented_toml(
        self, *, title: str, examples: Mapping[str, Any] | None = None, width: int = 92
    ) -> str:
        """A commented file: ``title``, the precedence, then each setting's doc, environment
        variable and default (commented out), or its value from ``examples`` (written out)."""
        lines = [
            *(f"# {line}" for line in title.splitlines()),
            f"# Each setting: {PRECEDENCE}.",
            "# Commented-out lines show the default.",
            "",
        ]
        if self.section:
            lines += [f"[{self.section}]", ""]
        for name in self.fields:
            lines += textwrap.wrap(
                self.fields[name].metadata["doc"],
                width,
                initial_indent="# ",
                subsequent_indent="# ",
            )
            lines.append(f"# env {self.env_name(name)}")
            if examples and name in examples:
                lines.append(f"{name} = {toml_value(examples[name])}")
            else:
                lines.append(f"# {name} = {toml_value(self.default(name))}")
            lines.append("")
        return "\n".join(lines)

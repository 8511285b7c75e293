"""courselib.config, the one settings mechanism: precedence, parsing, --help, config files; and
the three tools (courselib, autograder, server_setup) reading their settings through it."""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from courselib.config import PRECEDENCE, Schema, setting
from courselib.errors import CourseError


@dataclass(frozen=True)
class Toy:
    seconds: float = setting("Seconds a job may run.", 60.0)
    workers: int = setting("Jobs at once.", 2)
    strict: bool = setting("Stop at the first failure.", False, flag="--stop-early")
    name: str = setting("What the job is called.", "job")
    folder: Path = setting("Where jobs write.", factory=lambda: Path("/tmp/toy"))
    mode: Literal["fast", "safe"] = setting("How jobs run.", "safe")
    notes: dict[str, str] = field(default_factory=dict)  # not a setting: no flag, env or key


TOY = Schema(Toy, env_prefix="TOY_", section="toy", missing_file_hint="Make {path} first.")


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "toy.toml"
    path.write_text(text)
    return path


def _flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    TOY.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_argument_beats_environment_beats_file_beats_default(tmp_path) -> None:
    path = _file(tmp_path, "[toy]\nseconds = 30\nworkers = 3\nname = 'from-file'\n")
    env = {"TOY_SECONDS": "20", "TOY_WORKERS": "4"}
    got = TOY.load(args={"seconds": 10.0, "workers": None}, environ=env, path=path)
    assert got.seconds == 10.0  # argument over the other three
    assert got.workers == 4  # environment over file (None: not given)
    assert got.name == "from-file"  # file over default
    assert got.mode == "safe" and got.folder == Path("/tmp/toy")  # default, a factory's too
    assert TOY.load(environ={"TOY_WORKERS": ""}, path=path).workers == 3  # empty: unset
    flags = TOY.flag_values(_flags("--seconds", "5", "--stop-early", "--mode", "fast"))
    assert flags == {"seconds": 5.0, "strict": True, "mode": "fast"}  # only what was given
    assert TOY.load(args=flags, environ=env, path=path).seconds == 5.0


def test_strings_parse_by_the_fields_type() -> None:
    env = {
        "TOY_SECONDS": "1.5",
        "TOY_WORKERS": "7",
        "TOY_STRICT": "Yes",
        "TOY_FOLDER": "~/jobs",
        "TOY_MODE": "fast",
    }
    got = TOY.load(environ=env)
    assert (got.seconds, got.workers, got.strict, got.mode) == (1.5, 7, True, "fast")
    assert got.folder == Path("~/jobs").expanduser()
    assert TOY.load(environ={"TOY_STRICT": "off"}).strict is False
    assert TOY.flag_values(_flags("--no-stop-early")) == {"strict": False}


@pytest.mark.parametrize(
    ("source", "message", "hint"),
    [
        (
            "env",
            r"workers = 'many' is not an integer \(from environment variable TOY_WORKERS\)",
            "Jobs at once",
        ),
        ("file", r"workers = 'many' is not an integer \(from .*toy.toml\)", "Jobs at once"),
        ("flag", r"workers = 'many' is not an integer \(from --workers\)", "Jobs at once"),
        ("argument", r"workers = 'many' is not an integer \(from argument workers\)", ""),
    ],
)
def test_a_wrong_value_names_its_source(tmp_path, source, message, hint) -> None:
    with pytest.raises(CourseError, match=message) as err:
        if source == "env":
            TOY.load(environ={"TOY_WORKERS": "many"})
        elif source == "file":
            TOY.load(environ={}, path=_file(tmp_path, "[toy]\nworkers = 'many'\n"))
        elif source == "flag":
            TOY.flag_values(_flags("--workers", "many"))
        else:
            TOY.load(args={"workers": "many"}, environ={})
    assert hint in err.value.hint


@pytest.mark.parametrize(
    ("name", "raw", "what"),
    [
        ("mode", "slow", "Use one of fast, safe"),
        ("strict", "maybe", "true or false"),
        ("seconds", "soon", "a number"),
    ],
)
def test_a_wrong_value_says_what_is_allowed(name, raw, what) -> None:
    with pytest.raises(CourseError) as err:
        TOY.load(environ={TOY.env_name(name): raw})
    assert what in err.value.hint and repr(raw) in err.value.message


def test_toml_values_must_have_the_fields_type(tmp_path) -> None:
    for text in ("workers = 2.5", "workers = true", "strict = 1", "seconds = 'x'"):
        with pytest.raises(CourseError, match="is not"):
            TOY.load(environ={}, path=_file(tmp_path, f"[toy]\n{text}\n"))
    assert TOY.load(environ={}, path=_file(tmp_path, "[toy]\nseconds = 3\n")).seconds == 3.0
    assert TOY.load(environ={}, path=_file(tmp_path, "[toy]\nname = 40\n")).name == "40"


def test_file_mistakes_are_course_errors(tmp_path) -> None:
    with pytest.raises(CourseError, match=r"unknown setting\(s\) secnds") as err:
        TOY.load(environ={}, path=_file(tmp_path, "[toy]\nsecnds = 3\n"))
    assert "seconds, workers, strict, name, folder, mode" in err.value.hint
    broken = _file(tmp_path, "[toy\n")
    with pytest.raises(CourseError, match="not valid TOML"):
        TOY.load(environ={}, path=broken)
    # one setting reads the file only when it needs it: a broken file stops only that
    assert TOY.resolve("workers", arg=3, environ={}, path=broken) == 3
    assert TOY.resolve("workers", environ={"TOY_WORKERS": "4"}, path=broken) == 4
    with pytest.raises(CourseError, match="not valid TOML"):
        TOY.resolve("workers", environ={}, path=broken)
    with pytest.raises(CourseError, match="does not exist") as err:
        TOY.load(environ={}, path=tmp_path / "none.toml")
    assert err.value.hint == f"Make {tmp_path / 'none.toml'} first."
    lenient = Schema(Toy, env_prefix="TOY_")  # no hint: a missing file reads as empty
    assert lenient.load(environ={}, path=tmp_path / "none.toml") == Toy()
    with pytest.raises(TypeError, match="no setting secnds"):  # a caller's typo
        TOY.load(args={"secnds": 1})


def test_help_shows_each_fields_doc_default_and_env(capsys) -> None:
    with pytest.raises(SystemExit):
        _flags("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert PRECEDENCE in text
    assert "Seconds a job may run. (default 60.0; env TOY_SECONDS)" in text
    assert '(default "safe"; env TOY_MODE)' in text and "{fast,safe}" in text
    assert "--stop-early, --no-stop-early" in text and "--notes" not in text


def test_the_generated_files_load_back(tmp_path) -> None:
    commented = TOY.commented_toml(title="Toy settings.", examples={"workers": 5})
    assert commented.startswith("# Toy settings.\n") and "# env TOY_SECONDS" in commented
    assert "# seconds = 60.0" in commented and "\nworkers = 5\n" in commented
    assert TOY.load(environ={}, path=_file(tmp_path, commented)) == Toy(workers=5)
    values = Toy(seconds=1.5, workers=3, strict=True, name="x", folder=Path("/srv"), mode="fast")
    assert TOY.load(environ={}, path=_file(tmp_path, TOY.to_toml(values))) == values


def test_a_type_it_cannot_parse_is_refused_when_the_schema_is_made() -> None:
    @dataclass
    class Bad:
        sizes: list[int] = setting("Sizes.", factory=list)

    with pytest.raises(TypeError, match="cannot be parsed"):
        Schema(Bad, env_prefix="BAD_")


# --- the three tools on the mechanism


def test_courselib_settings_keep_their_names_and_precedence(tmp_path, monkeypatch) -> None:
    from courselib import settings

    config = tmp_path / "config.toml"
    config.write_text('threads = 3\nserver_url = "http://file:1/v1"\n')
    monkeypatch.setenv("COURSELAB_CONFIG", str(config))
    monkeypatch.setenv("COURSELAB_SERVER_URL", "http://env:2/v1")
    monkeypatch.delenv("COURSELAB_THREADS", raising=False)
    assert settings.resolve("threads") == 3  # file over default
    assert settings.resolve("threads", 5) == 5  # argument over file
    assert settings.resolve("server_url") == "http://env:2/v1"  # env over file
    assert settings.resolve("api_key") == ""  # default
    assert settings.data_dir(tmp_path / "d") == tmp_path / "d"
    assert "COURSELAB_THREADS" in settings.describe()
    monkeypatch.setenv("COURSELAB_THREADS", "lots")
    with pytest.raises(CourseError, match="environment variable COURSELAB_THREADS"):
        settings.resolve("threads")
    config.write_text("thread = 3\n")
    with pytest.raises(CourseError, match="unknown setting"):
        settings.resolve("api_key")
    assert "\ncannot read: " in settings.describe()  # --help still answers


def test_server_setup_files_round_trip(tmp_path) -> None:
    from server_setup.settings import Deployment, example_toml, load, to_toml

    example = tmp_path / "deployment.toml"
    example.write_text(example_toml())
    tomllib.loads(example.read_text())
    d = load(example, environ={})
    assert (d.model, d.dtype, d.max_seqs) == ("wizard-vicuna-13b", "awq", Deployment().max_seqs)
    again = tmp_path / "again.toml"
    again.write_text(to_toml(d))
    assert load(again, environ={}) == d


def test_grade_settings_flags_env_and_autograder_toml(tmp_path, monkeypatch) -> None:
    from autograder.__main__ import parser
    from autograder.course import CONFIG_FILE, GRADE, Course, GradeSettings, _settings_text

    course = Course(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(
        _settings_text().replace("# memory_mb = 4096", "memory_mb = 512")
        + "[parameters.lab03_memory]\nN_CTX = 256\n"
    )
    monkeypatch.setenv("COURSELAB_GRADE_CELL_TIMEOUT", "30")
    args = parser().parse_args(
        ["grade", str(tmp_path), "--isolation", "sandbox", "--run-all-cells"]
    )
    got = course.settings(**GRADE.flag_values(args))
    assert (got.memory_mb, got.cell_timeout, got.isolation) == (512, 30.0, "sandbox")
    assert got.run_after_last_test is True and got.parameters == {"lab03_memory": {"N_CTX": 256}}
    assert got.notebook_timeout == GradeSettings().notebook_timeout
    (tmp_path / CONFIG_FILE).write_text("[grade]\ncell_timout = 5\n")
    with pytest.raises(CourseError, match=r"\[grade\]: unknown setting"):
        course.settings()
    bad = parser().parse_args(["grade", str(tmp_path), "--isolation", "chroot"])
    with pytest.raises(CourseError, match="Unknown isolation 'chroot'"):
        GRADE.flag_values(bad)


def test_every_tools_help_shows_the_fields_defaults(capsys) -> None:
    from autograder.__main__ import parser
    from autograder.course import GRADE
    from server_setup.settings import SCHEMA, add_settings

    with pytest.raises(SystemExit):
        parser().parse_args(["grade", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in GRADE.fields:  # every old flag, from the field
        assert GRADE.flag(name) in text and GRADE.help(name) in text
    assert "--run-all-cells" in text and "--stderr-fails" in text and "--kernel-threads" in text
    render = argparse.ArgumentParser()
    add_settings(render)
    help_text = " ".join(render.format_help().split())
    assert f"(default {SCHEMA.default('max_seqs')}; env COURSELAB_SERVER_MAX_SEQS)" in help_text

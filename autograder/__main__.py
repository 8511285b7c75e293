"""``python -m autograder``: set up a course, take in submissions, grade them, export the grades.

Typical use::

    python -m autograder setup /srv/class                 # source/ from labs/, student versions
    python -m autograder collect /srv/class lab03_memory export.zip
    python -m autograder grade /srv/class lab03_memory --workers 2
    python -m autograder export /srv/class                # grades.csv, feedback, summary

    python -m autograder demo /tmp/demo                   # all of it on a sample class
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

from autograder.course import GRADE, ISOLATIONS, GradeSettings, setup


def _value(text: str):
    """``-p N_CTX=256`` values: Python literals, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _course(args):
    from autograder.course import Course
    from courselib.errors import CourseError

    course = Course(Path(args.course).resolve())
    if not (course.root / "nbgrader_config.py").exists():
        raise CourseError(
            f"{course.root} is not a course directory (it has no nbgrader_config.py).",
            hint=f"Run `python -m autograder setup {course.root}` first, or name the course's folder.",
        )
    return course


def _labs(course, names: list[str]) -> list[str]:
    """``names`` if the course has each of them (default: all its labs), else a CourseError."""
    from courselib.errors import CourseError

    known = course.assignments()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise CourseError(
            f"{course.root} has no lab {unknown[0]!r}.",
            hint=f"Name one of: {', '.join(known) or '(none: run setup)'}.",
        )
    return names or known


def _settings(args, course, assignment: str) -> GradeSettings:
    settings = course.settings(**GRADE.flag_values(args))
    extra = dict(pair.split("=", 1) for pair in args.parameter)
    if extra:
        settings.parameters[assignment] = settings.parameters.get(assignment, {}) | {
            k: _value(v) for k, v in extra.items()
        }
    return settings


def cmd_setup(args) -> int:
    course = setup(args.course, labs_dir=args.labs, assignments=args.lab or None)
    for lab in course.assignments():
        print(f"{lab}: student version in {course.release_notebook(lab)}")
    return 0


def cmd_generate(args) -> int:
    from autograder.course import generate

    course = _course(args)
    for lab in _labs(course, args.lab):
        points = generate(course, lab)
        print(f"{lab}: {len(points)} test cells, {sum(points.values()):g} points")
    return 0


def cmd_collect(args) -> int:
    from autograder.collect import collect

    course = _course(args)
    _labs(course, [args.lab])
    report = collect(course, args.lab, args.source, pattern=args.pattern, max_mb=args.max_mb)
    print(f"took in {len(report.taken)} submissions of {args.lab}")
    for name, why in report.skipped:
        print(f"  skipped {name}: {why}")
    return 0


def cmd_grade(args) -> int:
    from autograder.grade import grade

    course = _course(args)
    labs = _labs(course, [args.lab] if args.lab else [])
    failed = 0
    for lab in labs:
        report = grade(
            course,
            lab,
            workers=args.workers,
            limit=args.limit,
            force=args.force,
            settings=_settings(args, course, lab),
            progress=not args.quiet,
            dask=args.dask,
        )
        done = report.submissions - report.planned
        print(
            f"{lab}: {report.submissions} submissions, {done} already graded, graded {report.graded} now "
            f"in {report.seconds:.1f} s ({report.per_minute:.1f}/min, {report.workers} workers)"
            + (
                f", {report.planned - len(report.results)} left (--limit)"
                if report.planned > len(report.results)
                else ""
            )
        )
        if report.pool_restarts:
            print(
                f"  a worker died {report.pool_restarts} times: its submissions were graded again"
            )
        for r in report.errors:
            print(f"  not graded: {r.student}: {'; '.join(r.reasons)}")
        for r in report.results:
            if r.flags:  # scores stand; an instructor looks (grades.csv's flag column)
                print(f"  flagged for review: {r.student}: {'; '.join(r.flags)}")
        failed += len(report.errors)
    return 1 if failed else 0


def cmd_export(args) -> int:
    from autograder.export import export

    course = _course(args)
    report = export(
        course,
        _labs(course, args.lab) if args.lab else None,
        out=args.out,
        feedback=not args.no_feedback,
        show_hidden=args.show_hidden,
    )
    print(report.summary)
    print(f"\ngrade sheet: {report.csv}")
    if report.png:
        print(f"histogram:   {report.png}")
    if not args.no_feedback:
        print(f"feedback:    {len(report.feedback)} files under {course.root / 'feedback'}")
    for lab, error in report.feedback_errors.items():
        print(f"feedback for {lab} failed:\n{error}", file=sys.stderr)
    return 1 if report.feedback_errors else 0


def cmd_sample_class(args) -> int:
    from autograder.sample_class import make_sample_class

    course = _course(args)
    settings = course.settings(**GRADE.flag_values(args))
    expected = make_sample_class(
        course, args.lab, args.out, memory_mb=settings.memory_mb, isolation=settings.isolation
    )
    for name, e in expected.items():
        print(f"{name:<26} {e.score:g}/{e.max_score:g}  {e.about}")
    print(f"\n{len(expected)} notebooks and expected.json in {args.out}")
    return 0


def cmd_verify(args) -> int:
    from autograder.grade.ledger import Ledger
    from autograder.sample_class import check, load_expected

    course = _course(args)
    expected = load_expected(args.expected)
    with Ledger(course.db_url) as ledger:
        rows = {r["student"]: r for r in ledger.rows(args.lab)}
    bad = 0
    for student, want in expected.items():
        row = rows.get(student)
        problems = (
            ["not graded"] if row is None else check(want, row["score"] or 0.0, row["reasons"])
        )
        bad += bool(problems)
        print(f"{'ok ' if not problems else 'BAD'} {student:<26} {'; '.join(problems)}")
    print(f"{len(expected) - bad} of {len(expected)} as expected")
    return 1 if bad else 0


def cmd_demo(args) -> int:
    from autograder.collect import collect
    from autograder.export import export
    from autograder.grade import grade
    from autograder.sample_class import make_sample_class

    root = Path(args.course)
    course = setup(root, labs_dir=args.labs, assignments=[args.lab])
    settings = course.settings(
        cell_timeout=20.0, notebook_timeout=120.0, memory_mb=1024, isolation=args.isolation
    )
    out = root / "sample-class"
    make_sample_class(course, args.lab, out, memory_mb=1024, isolation=settings.isolation)
    collect(course, args.lab, out)
    report = grade(course, args.lab, workers=args.workers, settings=settings)
    print(f"graded {report.graded} in {report.seconds:.1f} s ({report.per_minute:.1f}/min)\n")
    print(export(course, [args.lab]).summary)
    args.expected = out / "expected.json"
    print()
    return cmd_verify(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="command")

    def command(name, func, help_text, *, lab: str | None = None):
        s = sub.add_parser(name, help=help_text, description=help_text)
        s.add_argument("course", help="the course directory")
        if lab == "one":
            s.add_argument("lab", help="the lab (assignment) name, e.g. lab03_memory")
        elif lab == "many":
            s.add_argument("lab", nargs="*", help="labs (default: all)")
        s.set_defaults(func=func)
        return s

    s = command(
        "setup", cmd_setup, "create a course directory from labs/ and generate the student versions"
    )
    s.add_argument("--labs", default="labs", help="folder of lab folders (default: labs)")
    s.add_argument("--lab", action="append", help="only this lab (repeatable)")

    command("generate", cmd_generate, "generate (again) and check the student versions", lab="many")

    s = command("collect", cmd_collect, "take in submissions from a folder or zip", lab="one")
    s.add_argument(
        "source", help="folder or .zip: one notebook per student (file or folder name = id)"
    )
    s.add_argument("--pattern", help="regex with a (?P<student>...) group, matched on each path")
    s.add_argument("--max-mb", type=int, default=50, help="skip notebooks larger than this")

    s = command("grade", cmd_grade, "grade what is missing or changed (resumable)")
    s.add_argument("lab", nargs="?", help="the lab (default: every lab with submissions)")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument(
        "--dask",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="grade on a Dask cluster: alone, a local one of --workers processes; with a "
        "scheduler address (tcp://host:8786), that cluster (its workers must share the course "
        "directory's file system)",
    )
    s.add_argument("--limit", type=int, help="stop after grading this many")
    s.add_argument("--force", action="store_true", help="regrade everything")
    GRADE.add_arguments(s, title="grading settings")
    s.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="inject into the parameters cell",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    s = command("export", cmd_export, "grade sheet, feedback HTML and class summary", lab="many")
    s.add_argument(
        "--out", help="folder for grades.csv, summary.txt, scores.png (default: exports/)"
    )
    s.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")
    s.add_argument("--show-hidden", action="store_true", help="keep hidden tests in the feedback")

    s = command(
        "sample-class", cmd_sample_class, "write a sample class with expected results", lab="one"
    )
    s.add_argument("out", help="folder for the notebooks and expected.json")
    # the hog exceeds the memory cap, the escapes test the isolation the class is graded with
    GRADE.add_arguments(s, only=("memory_mb", "isolation"), title="as the class will be graded")

    s = command(
        "verify",
        cmd_verify,
        "compare graded results with a sample class's expected.json",
        lab="one",
    )
    s.add_argument("expected", help="expected.json written by sample-class")

    s = sub.add_parser("demo", help="set up, make a sample class, grade it, export, verify")
    s.add_argument("course", help="a new course directory")
    s.add_argument("--labs", default="labs")
    s.add_argument("--lab", default="lab03_memory")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--isolation", choices=ISOLATIONS, default="none")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status as every course command (:mod:`courselib.errors`)."""
    from courselib.errors import run_command

    args = parser().parse_args(argv)
    return run_command(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())

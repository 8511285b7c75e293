"""The gateway and local-deployment commands: ``keys``, ``up``, ``down``, ``status``.

Each takes the deployment's settings like ``render`` (a TOML file, COURSELAB_SERVER_* and
flags); ``keys``, ``down`` and ``status`` need only the state dir (``--state-dir``) and, for
status, the ports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_UP_HELP = """\
Run the CPU deployment here, as you: plan (refuse when it does not fit), render into
<state dir>/deploy, start llama-cpp-python's server on 127.0.0.1:engine_port and nginx on
gateway_host:gateway_port, wait until both answer, print the URL. MODEL may be a course model
(course-chat) or a .gguf file. State dir: --state-dir, else $XDG_STATE_HOME/courselab-server,
else ~/.local/state/courselab-server.
"""

_ENGINE_KEY_HELP = """\
The engine (vLLM, llama-cpp-python's server) listens on loopback and requires its own key,
which only the gateway sends: no local user of the host can go around the gateway. The key
is kept in the state dir's keys/engine.env (the engine's environment: systemd
EnvironmentFile=, compose env_file) and keys/engine-auth.conf (nginx), both 0600. Without
--rotate this writes them only when missing (render, keys issue and up do the same). After
--rotate restart the engine and reload the gateway.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from server_setup.settings import add_settings

    p = sub.add_parser(
        "up",
        help="start the CPU deployment here (llama.cpp server + nginx gateway)",
        description=_UP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("settings", nargs="?", help="the deployment's TOML settings file")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for both to answer"
    )
    add_settings(p)
    p.set_defaults(func=_run_up)

    p = sub.add_parser("down", help="stop what up started (gateway, then engine)")
    p.add_argument("settings", nargs="?", help="the deployment's TOML settings file")
    add_settings(p)
    p.set_defaults(func=_run_down)

    p = sub.add_parser(
        "status", help="is each process up; usage per student from the gateway log (table + PNG)"
    )
    p.add_argument("settings", nargs="?", help="the deployment's TOML settings file")
    p.add_argument("--plot", metavar="PNG", help="where to write the plot (default: in logs/)")
    p.add_argument("--json", action="store_true", help="print status and usage as JSON")
    add_settings(p)
    p.set_defaults(func=_run_status)

    keys = sub.add_parser("keys", help="per-student API keys: issue from a roster, revoke, list")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    p = ksub.add_parser(
        "issue",
        help="a key for each roster student without one (CSV: student_id,name,email)",
    )
    p.add_argument("roster", help="the class roster CSV (columns student_id, name, email)")
    p.add_argument(
        "--out",
        metavar="CSV",
        help="write the keys to hand out here (0600) instead of printing them",
    )
    p.add_argument("--reissue", action="store_true", help="new keys for students who have one")
    p.set_defaults(func=_run_keys_issue)
    p = ksub.add_parser("revoke", help="revoke a student's key (the gateway reloads)")
    p.add_argument("student", help="the student id")
    p.set_defaults(func=_run_keys_revoke)
    p = ksub.add_parser("list", help="students, key fingerprints, issued/revoked")
    p.set_defaults(func=_run_keys_list)
    p = ksub.add_parser(
        "engine",
        help="the engine's own key (only the gateway sends it): write it if missing",
        description=_ENGINE_KEY_HELP,
    )
    p.add_argument("--rotate", action="store_true", help="a new key, replacing the old one")
    p.set_defaults(func=_run_keys_engine)
    for action in ("issue", "revoke", "list", "engine"):
        ap = ksub.choices[action]
        ap.add_argument("--settings", metavar="FILE", help="the deployment's TOML settings file")
        ap.add_argument("--state-dir", dest="state_dir", help="where the keys are kept")


def _load(args: argparse.Namespace):
    from server_setup.settings import load_settings

    return load_settings(args)


def _load_keys_settings(args: argparse.Namespace):
    from server_setup.settings import load

    return load(args.settings, overrides={"state_dir": args.state_dir})


def _run_up(args: argparse.Namespace) -> int:
    from server_setup.local import DoesNotFit, up
    from server_setup.report import refusal, table

    d = _load(args)
    try:
        up(d, timeout_s=args.timeout)
    except DoesNotFit as exc:
        print(table(exc.plan))
        print(refusal(exc.plan), file=sys.stderr)
        print("Nothing started.", file=sys.stderr)
        return 1
    return 0


def _run_down(args: argparse.Namespace) -> int:
    from server_setup.local import down

    stopped = down(_load(args))
    print("stopped " + " and ".join(stopped) if stopped else "nothing was running")
    return 0


def _run_status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from server_setup.gateway import usage
    from server_setup.local import Local, describe, status

    d = _load(args)
    s = status(d)
    rows = usage.usage(usage.read_log(s.access_log))
    if args.json:
        print(json.dumps({**s.as_dict(), "usage": [asdict(u) for u in rows]}, indent=2))
        return 0
    print(describe(s))
    print()
    print(usage.table(rows))
    if rows:
        png = usage.plot(rows, Path(args.plot) if args.plot else Local.of(d).usage_png)
        print(f"plot: {png}")
    return 0


def _reload(d) -> None:
    from server_setup.local import reload_gateway

    if reload_gateway(d):
        print("the running gateway reloaded its keys")


def _run_keys_issue(args: argparse.Namespace) -> int:
    from server_setup.gateway.keys import issued_csv, read_roster, write_issued
    from server_setup.local import Local

    d = _load_keys_settings(args)
    store = Local.of(d).keys
    store.ensure()  # the folder, and the engine's key when missing
    roster = read_roster(Path(args.roster))
    issued = store.issue(roster, reissue=args.reissue)
    kept = len(roster) - len(issued)
    if args.out:
        write_issued(issued, Path(args.out))
        print(f"{len(issued)} keys written to {args.out} (0600): hand each student theirs")
    else:
        sys.stdout.write(issued_csv(issued))
    print(
        f"{len(issued)} issued, {kept} kept their key; hashes in {store.map_file}",
        file=sys.stderr,
    )
    _reload(d)
    return 0


def _run_keys_revoke(args: argparse.Namespace) -> int:
    from server_setup.local import Local

    d = _load_keys_settings(args)
    student = Local.of(d).keys.revoke(args.student)
    print(f"revoked the key of {student.student_id} ({student.revoked})")
    _reload(d)
    return 0


def _run_keys_engine(args: argparse.Namespace) -> int:
    from server_setup.local import Local

    store = Local.of(_load_keys_settings(args)).keys
    written = store.ensure_engine_key(rotate=args.rotate)
    what = "wrote a new" if written else "kept the"
    print(f"{what} engine key: {store.engine_env_file} and {store.engine_auth_file} (0600)")
    if written and args.rotate:
        print(
            "restart the engine (systemctl restart courselab-engine) and reload the gateway "
            "(systemctl reload courselab-gateway; up: down, then up)"
        )
    return 0


def _run_keys_list(args: argparse.Namespace) -> int:
    from server_setup.local import Local

    d = _load_keys_settings(args)
    students = Local.of(d).keys.students()
    if not students:
        print("no keys issued yet")
        return 0
    print(f"{'student':<16}{'name':<24}{'key sha256':<14}{'issued':<27}revoked")
    for s in students:
        print(f"{s.student_id:<16}{s.name[:23]:<24}{s.sha256[:12]:<14}{s.issued:<27}{s.revoked}")
    return 0

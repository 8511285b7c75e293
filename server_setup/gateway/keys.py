"""Per-student API keys: issued from a roster CSV, stored hashed, revocable.

The gateway never sees a key file with keys in it. :func:`issue` makes one random key per
student (``sk-course-`` + 32 random bytes, URL-safe base64), returns the keys once, for the
instructor to hand out, and keeps only their sha256 in the state dir:

- ``keys/students.json``: every student ever issued a key (id, name, email, key sha256,
  issued and revoked times): what ``keys list`` shows;
- ``keys/keys.map``: the active keys as nginx ``map`` lines, ``"<sha256 hex>" "<student id>";``;
  nginx includes it, and njs hashes the bearer token of each request to look it up.

Both files are 0600 in a 0700 folder, owned by whoever runs ``keys``: the user ``up`` runs nginx
as, or root on a class host (nginx's master process reads the map at start and reload, before
its workers drop to their user). A plain sha256 is enough: the keys are 256-bit random strings,
so there is no dictionary to try (docs/facts.md#nginx-gateway).

The same folder holds the engine's own key (:meth:`KeyStore.ensure_engine_key`), which only
the gateway knows, so that a local user of the host cannot go around the gateway to the
engine's loopback port. One key, two files, both 0600, made once and kept until rotated:

- ``keys/engine.env``: ``VLLM_API_KEY=...`` and ``API_KEY=...``, the variables vLLM's and
  llama-cpp-python's servers read their key from (systemd ``EnvironmentFile=``, compose
  ``env_file``, Apptainer ``--env-file``, ``up``); in the environment, not on the command
  line, where every local user could read it with ``ps``;
- ``keys/engine-auth.conf``: the ``proxy_set_header Authorization "Bearer ...";`` line the
  gateway's nginx.conf includes (read by nginx's master, like the map).

Example::

    >>> store = KeyStore(Path("/tmp/state/keys"))
    >>> issued = store.issue(read_roster(Path("roster.csv")))
    >>> issued[0].student_id, issued[0].key[:10]
    ('s001', 'sk-course-')
    >>> store.revoke("s001").revoked != ""
    True
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from courselib.errors import CourseError

KEYS_MAP = "keys.map"
"""The hashed keys nginx includes (one ``hash student_id;`` line per key)."""
ENGINE_ENV = "engine.env"
"""The engine's own key as environment variables (root-only)."""
ENGINE_AUTH = "engine-auth.conf"
"""The ``Authorization`` header line nginx sends to the engine (root-only)."""

PREFIX = "sk-course-"
ENGINE_PREFIX = "sk-engine-"
ENGINE_KEY_VARS = ("VLLM_API_KEY", "API_KEY")
"""Where the engines read their key: vLLM's OpenAI server (``--api-key``'s variable) and
llama-cpp-python's server (pydantic settings: its ``api_key`` field from the environment)."""
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""What a student id may be: it goes into nginx's map file and every log line unescaped."""


@dataclass(frozen=True)
class Student:
    """One roster entry with its key's hash (the key itself is never stored)."""

    student_id: str
    name: str = ""
    email: str = ""
    sha256: str = ""
    issued: str = ""
    revoked: str = ""
    """When the key was revoked (ISO time); empty while it is active."""

    @property
    def active(self) -> bool:
        return bool(self.sha256) and not self.revoked


@dataclass(frozen=True)
class Issued:
    """A key just made: shown once, then only its hash is kept."""

    student_id: str
    name: str
    email: str
    key: str


def hash_key(key: str) -> str:
    """sha256 hex of a key, as njs computes it in the gateway.

    Example: ``hash_key("abc")`` -> ``'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'``
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def read_roster(path: Path) -> list[Student]:
    """Students from a CSV with a header: ``student_id`` (or ``id``), optional ``name``, ``email``.

    Example: ``student_id,name,email`` / ``s001,Ada Lovelace,ada@example.edu``
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # spreadsheets add a BOM
    except FileNotFoundError:
        raise CourseError(
            f"Roster {path} does not exist.", hint="Give the class roster CSV."
        ) from None
    rows = list(csv.DictReader(io.StringIO(text)))
    columns = {c.strip().lower(): c for c in (rows[0].keys() if rows else [])}
    id_col = columns.get("student_id") or columns.get("id")
    if not id_col:
        raise CourseError(
            f"Roster {path} has no student_id column.",
            hint="First line: student_id,name,email (name and email optional).",
        )
    students: list[Student] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        sid = (row.get(id_col) or "").strip()
        if not STUDENT_ID.fullmatch(sid):
            raise CourseError(
                f"Roster {path}, line {line}: student id {sid!r} is empty or has characters "
                "the gateway's key map and logs cannot hold.",
                hint="Use letters, digits, '.', '_', '@' and '-' (at most 64).",
            )
        if sid in seen:
            raise CourseError(f"Roster {path}, line {line}: {sid} appears twice.", hint="Fix it.")
        seen.add(sid)
        students.append(
            Student(
                sid,
                name=(row.get(columns.get("name", ""), "") or "").strip(),
                email=(row.get(columns.get("email", ""), "") or "").strip(),
            )
        )
    return students


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner alone (0600), replacing ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class KeyStore:
    """The students and their key hashes in ``folder`` (``<state_dir>/keys``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @property
    def students_file(self) -> Path:
        return self.folder / "students.json"

    @property
    def map_file(self) -> Path:
        return self.folder / KEYS_MAP

    def students(self) -> list[Student]:
        if not self.students_file.exists():
            return []
        data = json.loads(self.students_file.read_text(encoding="utf-8"))
        return [Student(**row) for row in data]

    @property
    def engine_env_file(self) -> Path:
        return self.folder / ENGINE_ENV

    @property
    def engine_auth_file(self) -> Path:
        return self.folder / ENGINE_AUTH

    def ensure(self) -> None:
        """Create the folder (0700), an empty map (nginx starts with no students yet) and the
        engine's key, each only when missing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        if not self.map_file.exists():
            self._save(self.students())
        self.ensure_engine_key()

    def ensure_engine_key(self, *, rotate: bool = False) -> bool:
        """Write the engine's key files unless both exist; ``rotate``: a new key in any case.

        Returns True when a key was written (then the engine must restart and the gateway
        reload to use it).
        """
        if not rotate and self.engine_env_file.exists() and self.engine_auth_file.exists():
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        key = ENGINE_PREFIX + secrets.token_urlsafe(32)  # [A-Za-z0-9_-]: no quoting needed
        head = "# The engine's API key (python -m server_setup keys engine --rotate); keep 0600.\n"
        _write_private(
            self.engine_env_file, head + "".join(f"{var}={key}\n" for var in ENGINE_KEY_VARS)
        )
        _write_private(
            self.engine_auth_file,
            head + f'proxy_set_header Authorization "Bearer {key}";\n',
        )
        return True

    def engine_env(self) -> dict[str, str]:
        """The variables of ``engine.env`` (what the engine's environment gets)."""
        try:
            text = self.engine_env_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CourseError(
                f"The engine's key file {self.engine_env_file} does not exist.",
                hint="python -m server_setup keys engine (same --state-dir) writes it.",
            ) from None
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}

    def engine_key(self) -> str:
        """The engine's key (what a request straight to the engine must carry)."""
        return self.engine_env()[ENGINE_KEY_VARS[0]]

    def _save(self, students: list[Student]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        _write_private(
            self.students_file, json.dumps([asdict(s) for s in students], indent=1) + "\n"
        )
        lines = ["# sha256(key) -> student id; written by python -m server_setup keys"]
        lines += [f'"{s.sha256}" "{s.student_id}";' for s in students if s.active]
        _write_private(self.map_file, "\n".join(lines) + "\n")

    def issue(self, roster: list[Student], *, reissue: bool = False) -> list[Issued]:
        """A new key for each roster student without an active one (``reissue``: for all).

        Students already holding an active key keep it (and are not in the result), so
        issuing again after adding late students only makes keys for them.
        """
        known = {s.student_id: s for s in self.students()}
        issued: list[Issued] = []
        for entry in roster:
            old = known.get(entry.student_id)
            if old and old.active and not reissue:
                continue
            key = new_key()
            known[entry.student_id] = replace(
                entry,
                name=entry.name or (old.name if old else ""),
                email=entry.email or (old.email if old else ""),
                sha256=hash_key(key),
                issued=_now(),
                revoked="",
            )
            issued.append(Issued(entry.student_id, entry.name, entry.email, key))
        self._save(list(known.values()))
        return issued

    def revoke(self, student_id: str) -> Student:
        """Revoke a student's key (kept in the list, marked revoked); the map drops it."""
        students = self.students()
        for i, s in enumerate(students):
            if s.student_id == student_id:
                if not s.active:
                    raise CourseError(
                        f"{student_id} has no active key.",
                        hint="See python -m server_setup keys list.",
                    )
                students[i] = replace(s, revoked=_now())
                self._save(students)
                return students[i]
        raise CourseError(
            f"No student {student_id!r} in the key store {self.folder}.",
            hint="See python -m server_setup keys list.",
        )


def issued_csv(issued: list[Issued]) -> str:
    """The keys to hand out, as CSV (``student_id,name,email,api_key``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student_id", "name", "email", "api_key"])
    for i in issued:
        writer.writerow([i.student_id, i.name, i.email, i.key])
    return out.getvalue()


def write_issued(issued: list[Issued], path: Path) -> None:
    """The hand-out CSV at ``path``, readable by its owner alone (it holds live keys)."""
    _write_private(Path(path), issued_csv(issued))

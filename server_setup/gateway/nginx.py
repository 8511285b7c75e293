"""The gateway's nginx configuration: keys, per-student limits and logs in front of the engine.

nginx (Debian's package, with the njs module ``libnginx-mod-http-js``) listens on
``gateway_host:gateway_port`` and forwards to the engine on loopback. Per request, in nginx's
phase order:

1. body size: over ``max_body_kib`` -> 413 (``client_max_body_size``, checked on the
   Content-Length before anything else);
2. key: njs hashes the bearer token (sha256, :func:`keyHash` in ``gateway.js``) and a ``map``
   over the hashes in the key file gives the student id; no key, or an unknown or revoked one
   -> 401;
3. rate: ``limit_req`` keyed on the student id, ``rate_per_minute`` with a burst of
   ``rate_burst``; over it -> 429 with ``Retry-After`` (seconds until the next request is
   allowed: 60 / rate, rounded up);
4. body: njs reads the JSON body; over ``max_tokens`` (or not a positive whole number)
   -> 400; a ``model`` the deployment does not serve (``served_model_name``) -> 404 naming the
   served one (llama.cpp's server would answer any name with its one model); no
   ``max_tokens`` -> the gateway sets it to the cap (the engine would otherwise generate
   until its context is full);
5. the engine, with the student's key replaced by the engine's own (``Authorization: Bearer``
   from ``keys/engine-auth.conf``, included from the state dir: the key is in no rendered
   file) and ``proxy_buffering off`` so streamed (SSE) tokens reach the student as they
   come; an njs body filter passes each chunk on unchanged and notes the token counts.

With ``tls_cert`` and ``tls_key`` set, it listens with TLS and HTTP/2 instead of plain HTTP.
The same file runs under ``up`` (as you), systemd and the official nginx image (compose):
every path in it is absolute and the same on the host and in the container.

This module computes the values (paths, limits, the error bodies, the guarded prefixes);
``templates/nginx.conf.j2`` lays out the file (:mod:`server_setup.templates`).

Every error is a JSON body in OpenAI's shape (``{"error": {"message": ...}}``) so the
``openai`` client shows the message. One access log, a JSON line per request with the
student id (never the key), is what ``status`` reads (:mod:`server_setup.gateway.usage`).
The nginx behaviour relied on is in docs/facts.md#nginx-gateway.

Example::

    >>> d = load(None, overrides={"model": "m.gguf", "rate_per_minute": 20}, environ={})
    >>> paths = GatewayPaths.of(d, install_dir=Path("/srv/deploy"))
    >>> conf = nginx_conf(d, paths=paths, prefixes=["/v1/", "/extras/"])
    >>> "limit_req_zone $student_id zone=students:10m rate=20r/m;" in conf
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from server_setup.gateway.keys import ENGINE_AUTH, ENGINE_ENV, KEYS_MAP
from server_setup.settings import Deployment
from server_setup.templates import render_template

CONF = "gateway/nginx.conf"
"""The rendered configuration, relative to the install dir."""
JS = "gateway/gateway.js"
"""The njs checks, relative to the install dir (copied from this package)."""

UPSTREAM_KEEPALIVE = 64
"""Idle keep-alive connections to the engine nginx keeps (per worker): more than a class's
students who send at once."""
UPSTREAM_IDLE_S = 4
"""Seconds an idle connection to the engine stays open: under the 5 s after which
llama-cpp-python's server (uvicorn's default ``timeout_keep_alive``) closes one, so nginx,
not the engine, closes it."""

# Fields of one access-log line (nginx variable per field); status parses these names.
LOG_FIELDS = {
    "time": "$time_iso8601",
    "student": "$student_id",
    "status": "$status",
    "method": "$request_method",
    "uri": "$uri",
    "refusal": "$refusal",
    "max_tokens": "$max_tokens_asked",
    "prompt_tokens": "$prompt_tokens",
    "completion_tokens": "$completion_tokens",
    "request_s": "$request_time",
    "upstream_s": "$upstream_response_time",
    # where a slow request spent its time: connecting to the engine, its first byte (a
    # non-streamed reply's headers come with the whole answer, a stream's at once)
    "connect_s": "$upstream_connect_time",
    "header_s": "$upstream_header_time",
    "bytes_in": "$request_length",
    "bytes_out": "$bytes_sent",
}


@dataclass(frozen=True)
class GatewayPaths:
    """Where the running gateway keeps its files (all under the state dir but the config)."""

    install_dir: Path
    state_dir: Path

    @classmethod
    def of(cls, d: Deployment, *, install_dir: Path) -> GatewayPaths:
        return cls(install_dir=Path(install_dir), state_dir=d.resolved_state_dir())

    @property
    def conf(self) -> Path:
        return self.install_dir / CONF

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def keys_map(self) -> Path:
        """The hashed key file nginx includes (written by :mod:`server_setup.gateway.keys`)."""
        return self.keys_dir / KEYS_MAP

    @property
    def engine_auth(self) -> Path:
        """The engine's ``Authorization`` header line nginx includes (keys.py writes it)."""
        return self.keys_dir / ENGINE_AUTH

    @property
    def engine_env(self) -> Path:
        """The engine's key as environment variables (keys.py writes it)."""
        return self.keys_dir / ENGINE_ENV

    @property
    def access_log(self) -> Path:
        return self.state_dir / "logs" / "access.jsonl"

    @property
    def error_log(self) -> Path:
        return self.state_dir / "logs" / "gateway-error.log"

    @property
    def pid(self) -> Path:
        return self.state_dir / "run" / "nginx.pid"

    @property
    def prefix(self) -> Path:
        """nginx's -p prefix: its temp folders live here."""
        return self.state_dir / "nginx"

    @property
    def writable(self) -> tuple[Path, Path, Path]:
        """The folders nginx writes into: logs, pid, its prefix (temp files)."""
        return (self.access_log.parent, self.pid.parent, self.prefix)

    def make_dirs(self) -> None:
        """The folders nginx writes into (it creates its temp folders, not their parents)."""
        for folder in self.writable:
            folder.mkdir(parents=True, exist_ok=True)

    def argv(self, nginx: str = "nginx", *options: str) -> list[str]:
        """How the gateway is started (``up``, systemd, compose): ``nginx -p PREFIX -c CONF``.

        Example: ``paths.argv("/usr/sbin/nginx", "-t")`` checks the configuration.
        """
        return [nginx, *options, "-p", str(self.prefix), "-c", str(self.conf)]


def retry_after_s(d: Deployment) -> int:
    """Seconds until limit_req lets one more request through: 60 / rate, rounded up.

    Example: 30 requests a minute -> 2.
    """
    return math.ceil(60 / d.rate_per_minute)


def _error(message: str, code: str) -> str:
    """A ``return`` body: OpenAI's error shape, quoted for nginx (no ' or \\ in messages)."""
    assert "'" not in message and "\\" not in message
    return (
        '\'{"error": {"message": "' + message + '", "type": "invalid_request_error", '
        '"param": null, "code": "' + code + "\"}}'"
    )


def gateway_js() -> str:
    """The njs file's text (shipped beside this module)."""
    return files("server_setup.gateway").joinpath("gateway.js").read_text(encoding="utf-8")


def gateway_url(d: Deployment) -> str:
    """The students' base URL on this host (https when the gateway has a certificate).

    Example: ``gateway_url(Deployment())`` -> ``'http://127.0.0.1:8000/v1'``.
    """
    return f"{'https' if d.tls_cert else 'http'}://{d.gateway_host}:{d.gateway_port}/v1"


def nginx_conf(d: Deployment, *, paths: GatewayPaths, prefixes: Sequence[str]) -> str:
    """The whole nginx.conf for this deployment (``nginx -p PREFIX -c CONF``).

    ``prefixes``: the engine's URL prefixes the gateway forwards, each behind the students'
    keys (the engine's ``gateway_prefixes``: only what the engine serves is reachable).
    The values are computed here; ``templates/nginx.conf.j2`` lays them out.
    """
    wait = retry_after_s(d)
    # the gateway's own refusals, OpenAI error code -> message
    refusals = {
        "missing_api_key": "No API key: send the header Authorization: Bearer YOUR_COURSE_KEY.",
        "invalid_api_key": "This API key is not valid (unknown or revoked): check the key your "
        "instructor gave you.",
        "body_too_large": f"The request body is over the limit of {d.max_body_kib} KiB per "
        "request.",
        "rate_limit_exceeded": f"Rate limit: {d.rate_per_minute} requests a minute per student "
        f"(bursts of {d.rate_burst}). Retry after {wait} s.",
        "engine_unavailable": "The model server is not answering: try again in a minute, or "
        "tell your instructor.",
        "not_found": "Not found: the class server answers under /v1/.",
    }
    return render_template(
        "gateway/nginx.conf.j2",
        d=d,
        paths=paths,
        run=" ".join(paths.argv(d.nginx)),
        js_path=paths.install_dir / "gateway",
        log_format="{" + ", ".join(f'"{k}": "{v}"' for k, v in LOG_FIELDS.items()) + "}",
        body=f"{d.max_body_kib}k",
        # nginx refuses "burst=0"; no burst is written as none (then nodelay changes nothing)
        burst=f" burst={d.rate_burst} nodelay" if d.rate_burst else "",
        retry_after_s=wait,
        keepalive=UPSTREAM_KEEPALIVE,
        keepalive_timeout_s=UPSTREAM_IDLE_S,
        prefixes=prefixes,
        errors={code: _error(message, code) for code, message in refusals.items()},
    )

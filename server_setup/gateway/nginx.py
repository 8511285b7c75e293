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


def _listen(d: Deployment) -> str:
    """The server's listen lines: plain HTTP, or TLS with HTTP/2 when a certificate is set."""
    if not d.tls_cert:
        return f"listen {d.gateway_host}:{d.gateway_port};"
    # "listen ... http2" is the spelling nginx 1.22 (Debian 12) knows; 1.25.1 and later accept
    # it with a deprecation warning (they prefer "http2 on;", which 1.22 refuses)
    return f"""listen {d.gateway_host}:{d.gateway_port} ssl http2;
        ssl_certificate {d.tls_cert};
        ssl_certificate_key {d.tls_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:gateway_tls:10m;
        ssl_session_timeout 1h;
        ssl_session_tickets off;"""


def nginx_conf(d: Deployment, *, paths: GatewayPaths, prefixes: Sequence[str]) -> str:
    """The whole nginx.conf for this deployment (``nginx -p PREFIX -c CONF``).

    ``prefixes``: the engine's URL prefixes the gateway forwards, each behind the students'
    keys (the engine's ``gateway_prefixes``: only what the engine serves is reachable).
    """
    log_format = ", ".join(f'"{k}": "{v}"' for k, v in LOG_FIELDS.items())
    body = f"{d.max_body_kib}k"
    wait = retry_after_s(d)
    # nginx refuses "burst=0"; no burst is written as none (then nodelay changes nothing)
    burst = f" burst={d.rate_burst} nodelay" if d.rate_burst else ""
    guarded = "\n".join(
        f"""        location {p} {{
            if ($http_authorization = "") {{
                return 401 {_error("No API key: send the header Authorization: Bearer YOUR_COURSE_KEY.", "missing_api_key")};
            }}
            if ($student_id = "") {{
                return 401 {_error("This API key is not valid (unknown or revoked): check the key your instructor gave you.", "invalid_api_key")};
            }}
            limit_req zone=students{burst};
            js_content gateway.checkBody;
        }}"""
        for p in prefixes
    )
    engine = f"""            proxy_pass http://engine;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # the student's key stays here; the engine gets its own (a root-only file)
            include {paths.engine_auth};
            # streaming: each SSE chunk goes to the student as the engine sends it
            proxy_buffering off;
            proxy_request_buffering on;
            proxy_read_timeout 600s;
            js_body_filter gateway.countTokens;"""
    return f"""# Rendered by python -m server_setup render from deployment.toml: edit that, re-render.
# Run: {" ".join(paths.argv(d.nginx))}
load_module {d.nginx_js_module};
# in the foreground: systemd, docker or `python -m server_setup up` supervises it
daemon off;
worker_processes 1;
pid {paths.pid};
error_log {paths.error_log} warn;

events {{
    worker_connections 1024;
}}

http {{
    server_tokens off;
    # temp files under the state dir, so nginx runs as any user (no /var/lib/nginx)
    client_body_temp_path {paths.prefix}/client_body;
    proxy_temp_path {paths.prefix}/proxy;
    fastcgi_temp_path {paths.prefix}/fastcgi;
    uwsgi_temp_path {paths.prefix}/uwsgi;
    scgi_temp_path {paths.prefix}/scgi;

    js_path {paths.install_dir / "gateway"};
    js_import gateway from gateway.js;
    js_set $key_hash gateway.keyHash;
    js_var $refusal;
    js_var $max_tokens_asked;
    js_var $rewritten_body;
    js_var $prompt_tokens;
    js_var $completion_tokens;
    js_var $sse_rest;
    js_var $json_body;

    # sha256(key) -> student id; the file holds hashes only (python -m server_setup keys)
    map_hash_bucket_size 128;
    map $key_hash $student_id {{
        default "";
        include {paths.keys_map};
    }}

    # per student: {d.rate_per_minute} requests a minute, bursts of {d.rate_burst} (10 MB of state: ~80,000 keys)
    limit_req_zone $student_id zone=students:10m rate={d.rate_per_minute}r/m;
    limit_req_status 429;
    limit_req_log_level warn;

    log_format student escape=json '{{{log_format}}}';

    upstream engine {{
        server {d.engine_host}:{d.engine_port};
        # idle connections to the engine kept for the next request: more than a class's
        # students sending at once (with 8, 30 students closed and reopened ~25 connections
        # per 120 requests; the latency difference was within the bench's noise)
        keepalive {UPSTREAM_KEEPALIVE};
        # shorter than the engine's own idle limit (uvicorn's default 5 s), so nginx closes an idle
        # connection first and never sends a request on one the engine is closing (a 502)
        keepalive_timeout {UPSTREAM_IDLE_S}s;
    }}

    server {{
        {_listen(d)}
        default_type application/json;
        access_log {paths.access_log} student;
        # bodies stay in memory (njs reads them there) up to the cap; over it: 413
        client_max_body_size {body};
        client_body_buffer_size {body};
        set $max_tokens_cap {d.max_tokens};
        set $served_models "{d.served_model_name}";

        error_page 413 @too_large;
        error_page 429 @too_many;
        # "=503": the status students see (502 when nginx cannot connect), which clients retry
        error_page 502 503 504 =503 @engine_down;

        location = /healthz {{
            access_log off;
            return 200 '{{"status": "ok"}}';
        }}

{guarded}

        location @engine {{
{engine}
        }}

        location @engine_rewritten {{
{engine}
            proxy_set_body $rewritten_body;
        }}

        location @too_large {{
            set $refusal body_too_large;
            return 413 {_error(f"The request body is over the limit of {d.max_body_kib} KiB per request.", "body_too_large")};
        }}

        location @too_many {{
            set $refusal rate_limited;
            add_header Retry-After {wait} always;
            return 429 {_error(f"Rate limit: {d.rate_per_minute} requests a minute per student (bursts of {d.rate_burst}). Retry after {wait} s.", "rate_limit_exceeded")};
        }}

        location @engine_down {{
            set $refusal engine_unavailable;
            add_header Retry-After 10 always;
            return 503 {_error("The model server is not answering: try again in a minute, or tell your instructor.", "engine_unavailable")};
        }}

        location / {{
            return 404 {_error("Not found: the class server answers under /v1/.", "not_found")};
        }}
    }}
}}
"""

"""Renders the nginx entry point from `nginx.conf.template` + `server.conf.template` and a `Settings`.

Why a renderer and not a static file: the replica addresses, ports, certificate paths and log paths
differ between a laptop, the test suite (random loopback ports, a throw-away prefix) and docker
compose, while the routing, sticky-session and streaming rules must be the same everywhere. One
template, several settings; the compose config in this directory is rendered output checked for
drift by tests/deploy.

    python -m deploy.nginx.render --prefix .nginx --listen 127.0.0.1:8080 \\
        --asr 127.0.0.1:8001,127.0.0.1:8011 --tts 127.0.0.1:8002 --orchestrator 127.0.0.1:8000
    nginx -p .nginx -c nginx.conf -g 'daemon off;'

    python -m deploy.nginx.render --preset compose > deploy/nginx/compose.conf
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN_TEMPLATE = HERE / "nginx.conf.template"
SERVER_TEMPLATE = HERE / "server.conf.template"
UPSTREAMS = ("asr", "tts", "orchestrator")
TEMP_SUBDIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class Settings:
    """Everything that differs between deployments. Paths may be relative: nginx resolves them
    against its prefix (`-p`), which is how a non-root nginx keeps pid, logs and temp files in one
    directory."""

    asr: tuple[str, ...] = ("127.0.0.1:8001",)
    tts: tuple[str, ...] = ("127.0.0.1:8002",)
    orchestrator: tuple[str, ...] = ("127.0.0.1:8000",)
    listen_http: str | None = "8080"  # "PORT" or "ADDR:PORT"; None = no plain-HTTP listener
    listen_https: str | None = None  # set together with tls_cert / tls_key
    tls_cert: str | None = None
    tls_key: str | None = None
    redirect_http_to_https: bool = False  # plain HTTP answers 308 to https (needs listen_https)
    server_name: str = "_"
    client_max_body_size: str = "50m"
    connect_timeout: str = "5s"
    stream_timeout: str = "3600s"  # WebSocket sessions and streamed speech
    rest_timeout: str = "600s"  # a long file transcribed on CPU
    max_fails: int = 3
    fail_timeout: str = "10s"
    next_upstream_tries: int = 2
    keepalive: int = 32  # idle upstream connections kept per worker
    worker_processes: str = "auto"
    worker_connections: int = 4096
    user: str | None = None  # only meaningful when nginx starts as root
    pid_path: str = "nginx.pid"
    error_log: str = "logs/error.log"
    error_log_level: str = "warn"
    access_log: str = "logs/access.log"
    temp_dir: str = "temp"
    public_metrics: bool = False  # /metrics through the entry point (off: scrape replicas directly)
    debug_upstream_header: bool = False  # X-Upstream response header naming the replica (debug only)
    real_ip_from: tuple[str, ...] = field(default=())  # trusted proxies in front of nginx (CIDRs)

    def __post_init__(self) -> None:
        for name in UPSTREAMS:
            if not getattr(self, name):
                raise ValueError(f"{name}: at least one replica address is needed")
        if self.listen_https and not (self.tls_cert and self.tls_key):
            raise ValueError("listen_https needs tls_cert and tls_key")
        if not (self.listen_http or self.listen_https):
            raise ValueError("nothing to listen on: set listen_http and/or listen_https")
        if self.redirect_http_to_https and not (self.listen_http and self.listen_https):
            raise ValueError("redirect_http_to_https needs both listeners")


PRESETS: dict[str, Settings] = {
    # one machine, the ports `make run` uses, nginx run by the user with -p PREFIX
    "local": Settings(worker_processes="1"),
    # docker-compose.yml: service names resolve through Docker's DNS; a name that resolves to several
    # replica addresses (deploy.replicas) becomes several upstream servers
    "compose": Settings(
        asr=("asr:8001",),
        tts=("tts:8002",),
        orchestrator=("orchestrator:8000",),
        listen_http="80",
        user="nginx",
        pid_path="/tmp/nginx.pid",
        error_log="/dev/stderr",
        access_log="/dev/stdout",
        temp_dir="/var/cache/nginx",  # exists in the nginx image, so nginx can create its subdirs
    ),
}
PRESETS["compose-tls"] = replace(
    PRESETS["compose"],
    listen_https="443",
    tls_cert="/etc/nginx/certs/fullchain.pem",
    tls_key="/etc/nginx/certs/privkey.pem",
    redirect_http_to_https=True,
)


def _fill(template: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return re.sub(r"\{\{(\w+)\}\}", sub, template)


def _upstream(name: str, servers: Sequence[str], s: Settings) -> str:
    lines = [f"    upstream {name} {{", "        hash $voice_sticky_key consistent;"]
    lines += [f"        server {addr} max_fails={s.max_fails} fail_timeout={s.fail_timeout};" for addr in servers]
    lines += [f"        keepalive {s.keepalive};", "    }"]
    return "\n".join(lines)


def _server(s: Settings, listen: list[str], tls: bool) -> str:
    template = SERVER_TEMPLATE.read_text()
    listen_lines = [f"        listen {addr}{' ssl' if tls else ''};" for addr in listen]
    if tls:
        listen_lines += [
            f"        ssl_certificate {s.tls_cert};",
            f"        ssl_certificate_key {s.tls_key};",
            "        ssl_protocols TLSv1.2 TLSv1.3;",
            "        ssl_session_cache shared:voice_tls:10m;",
            "        ssl_session_timeout 1h;",
        ]
    metrics = "" if s.public_metrics else "        location = /metrics {\n            return 404;\n        }\n"
    debug = "        add_header X-Upstream $upstream_addr always;\n" if s.debug_upstream_header else ""
    return _fill(
        template,
        {
            "listen": "\n".join(listen_lines),
            "server_name": s.server_name,
            "client_max_body_size": s.client_max_body_size,
            "connect_timeout": s.connect_timeout,
            "stream_timeout": s.stream_timeout,
            "rest_timeout": s.rest_timeout,
            "next_upstream_tries": str(s.next_upstream_tries),
            "debug_header": debug,
            "metrics_block": metrics,
        },
    )


def _redirect_server(s: Settings) -> str:
    https_port = s.listen_https.rsplit(":", 1)[-1] if s.listen_https else "443"
    target = "https://$host$request_uri" if https_port == "443" else f"https://$host:{https_port}$request_uri"
    return "\n".join(
        [
            "    server {",
            f"        listen {s.listen_http};",
            f"        server_name {s.server_name};",
            "        location = /nginx/health {",
            "            access_log off;",
            "            default_type application/json;",
            '            return 200 \'{"status":"ok"}\';',
            "        }",
            "        location / {",
            f"            return 308 {target};",
            "        }",
            "    }",
        ]
    )


def render(s: Settings) -> str:
    """The complete nginx.conf text for these settings."""
    if s.redirect_http_to_https:
        servers = [_redirect_server(s), _server(s, [s.listen_https], tls=True)]
    else:
        servers = []
        if s.listen_http:
            servers.append(_server(s, [s.listen_http], tls=False))
        if s.listen_https:
            servers.append(_server(s, [s.listen_https], tls=True))
    real_ip = ""
    if s.real_ip_from:
        real_ip = "".join(f"    set_real_ip_from {cidr};\n" for cidr in s.real_ip_from)
        real_ip += "    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;\n"
    return _fill(
        MAIN_TEMPLATE.read_text(),
        {
            "user": f"user {s.user};" if s.user else "# user: the starting user (set `user` when nginx starts as root)",
            "worker_processes": s.worker_processes,
            "worker_connections": str(s.worker_connections),
            "pid_path": s.pid_path,
            "error_log": s.error_log,
            "error_log_level": s.error_log_level,
            "temp_dir": s.temp_dir,
            "access_log": s.access_log,
            "real_ip": real_ip,
            "upstreams": "\n\n".join(_upstream(name, getattr(s, name), s) for name in UPSTREAMS),
            "servers": "\n".join(servers),
        },
    )


def write_prefix(prefix: Path, s: Settings) -> Path:
    """Writes PREFIX/nginx.conf and creates the log and temp directories a relative-path config
    needs, so `nginx -p PREFIX -c nginx.conf` runs without touching /etc or /var."""
    prefix = prefix.resolve()
    for rel in (s.error_log, s.access_log, s.pid_path):
        if not rel.startswith("/"):
            (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
    if not s.temp_dir.startswith("/"):
        for sub in TEMP_SUBDIRS:
            (prefix / s.temp_dir / sub).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render(s))
    return conf


def nginx_command(prefix: Path, nginx: str = "nginx") -> list[str]:
    """The foreground command for a config written by write_prefix."""
    return [nginx, "-p", f"{Path(prefix).resolve()}/", "-c", "nginx.conf", "-g", "daemon off;"]


def _addresses(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.nginx.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="local")
    parser.add_argument("--asr", type=_addresses, help="comma-separated ASR replica addresses")
    parser.add_argument("--tts", type=_addresses, help="comma-separated TTS replica addresses")
    parser.add_argument("--orchestrator", type=_addresses, help="comma-separated orchestrator replica addresses")
    parser.add_argument("--listen", dest="listen_http", help="plain HTTP listen address (PORT or ADDR:PORT)")
    parser.add_argument("--listen-https", dest="listen_https", help="HTTPS listen address")
    parser.add_argument("--cert", dest="tls_cert", help="TLS certificate chain (PEM)")
    parser.add_argument("--key", dest="tls_key", help="TLS private key (PEM)")
    parser.add_argument("--max-body", dest="client_max_body_size", help="upload cap, nginx size (e.g. 50m)")
    parser.add_argument("--user", help="worker user when nginx starts as root")
    parser.add_argument("--prefix", type=Path, help="write PREFIX/nginx.conf and its log/temp dirs")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("preset", "prefix") and v is not None}
    try:
        settings = replace(PRESETS[args.preset], **overrides)
    except ValueError as exc:
        parser.error(str(exc))
    if args.prefix:
        conf = write_prefix(args.prefix, settings)
        print(f"wrote {conf}; run: " + shlex.join(nginx_command(args.prefix)), file=sys.stderr)
    else:
        sys.stdout.write(render(settings))


if __name__ == "__main__":
    main()

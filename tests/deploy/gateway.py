"""The real Debian nginx, started by a test on loopback with a config rendered by deploy/nginx/render.py.

It runs as a non-system nginx: `nginx -p PREFIX -c nginx.conf -g 'daemon off;'` with pid, logs and
temp files under PREFIX (tests/artifacts/nginx-<port>/), so nothing in /etc or /var is touched and
the access log stays behind as a test artifact. The access log (JSON lines, one per request or
WebSocket session, written when it ends) names the replica nginx picked: that is how tests see
where a session went.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import httpx

from deploy.nginx.render import Settings, nginx_command, write_prefix
from tests.helpers.procs import ARTIFACTS, free_port


class Gateway:
    def __init__(self, settings: Settings, label: str | None = None) -> None:
        self.http_port = free_port()
        self.https_port = free_port() if settings.tls_cert else None
        self.settings = replace(
            settings,
            listen_http=f"127.0.0.1:{self.http_port}",
            listen_https=f"127.0.0.1:{self.https_port}" if self.https_port else None,
            worker_processes="1",
            # a root master hands requests to unprivileged workers; they only need the temp dirs,
            # which nginx chowns to them
            user=settings.user or ("nobody nogroup" if os.geteuid() == 0 else None),
        )
        self.prefix = ARTIFACTS / (label or f"nginx-{self.http_port}")
        self.proc: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}"

    @property
    def wss(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / self.settings.access_log

    def start(self, timeout: float = 15.0) -> Gateway:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise RuntimeError("nginx is not installed: `make install` installs the Debian package")
        if self.prefix.exists():
            shutil.rmtree(self.prefix)
        write_prefix(self.prefix, self.settings)
        check = subprocess.run([*nginx_command(self.prefix, nginx)[:-2], "-t"], capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"nginx -t refused the rendered config:\n{check.stderr}")
        stderr = open(self.prefix / "logs" / "stderr.log", "ab")
        self.proc = subprocess.Popen(nginx_command(self.prefix, nginx), stdout=stderr, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.error_tail()}")
            try:
                if httpx.get(self.http + "/nginx/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"nginx not answering on {self.http}: {self.error_tail()}")

    def error_tail(self, n: int = 20) -> str:
        path = self.prefix / self.settings.error_log
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def entries(self) -> list[dict]:
        """Every access-log entry so far (one per finished request / closed WebSocket)."""
        try:
            lines = self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def wait_entries(self, predicate, count: int = 1, timeout: float = 10.0) -> list[dict]:
        """Entries matching `predicate`, waiting until there are `count` (a WebSocket session is
        logged only once both sides have closed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.entries() if predicate(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def final_upstream(entry: dict) -> str:
    """The replica that answered: nginx lists every replica it tried ("a:1, b:2") in order."""
    return entry["upstream"].split(", ")[-1].strip()

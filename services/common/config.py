"""12-factor configuration: typed reads from the environment, validated once at start.

Each service declares a frozen dataclass and fills it through `EnvReader`, which collects every
bad value before failing, so one start-up tells the operator everything that is wrong, each line
naming the variable. The reader also records what it read, which is how the README's
configuration table stays in step with the code (`python -m services.common.config`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client_addr import DEFAULT_TRUSTED, parse_networks

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = Path(os.environ.get("MODELS_DIR", REPO_ROOT / "models"))


def repo_relative(path: Path) -> str:
    """A default path as the config table shows it: relative to the repository when inside it
    (so the table reads the same on every checkout), absolute otherwise (e.g. MODELS_DIR=/cache)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def from_repo(value: str) -> Path:
    """Relative paths are taken from the repository root (where `make run` starts), so a service
    finds models/ and data/ whatever its working directory."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


class ConfigError(SystemExit):
    """A bad setting. Subclasses SystemExit so an unhandled one stops the process with its message."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


@dataclass
class SettingDoc:
    name: str
    default: Any
    help: str


@dataclass
class EnvReader:
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    problems: list[str] = field(default_factory=list)
    docs: list[SettingDoc] = field(default_factory=list)

    def _raw(self, name: str, default: Any, help: str) -> str | None:
        self.docs.append(SettingDoc(name, default, help))
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: str, default: str | None, help: str = "", choices: Sequence[str] | None = None) -> Any:
        raw = self._raw(name, default, help)
        value = default if raw is None else raw
        if choices is not None and value not in choices:
            self.problems.append(f"{name}={value!r}: must be one of {', '.join(choices)}")
            return default
        return value

    def int(self, name: str, default: int, help: str = "", min: int | None = None, max: int | None = None) -> int:
        raw = self._raw(name, default, help)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r}: must be an integer")
            return default
        return self._bounded(name, value, default, min, max)

    def float(
        self, name: str, default: float, help: str = "", min: float | None = None, max: float | None = None
    ) -> float:
        raw = self._raw(name, default, help)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r}: must be a number")
            return default
        return self._bounded(name, value, default, min, max)

    def bool(self, name: str, default: bool, help: str = "") -> bool:
        raw = self._raw(name, default, help)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={raw!r}: must be true or false")
        return default

    def list(self, name: str, default: Sequence[str] = (), help: str = "") -> tuple[str, ...]:
        raw = self._raw(name, ",".join(default), help)
        if raw is None:
            return tuple(default)
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    def floats(self, name: str, default: Sequence[float], help: str = "") -> tuple[float, ...]:
        raw = self._raw(name, ",".join(str(v) for v in default), help)
        if raw is None:
            return tuple(default)
        try:
            return tuple(float(part) for part in raw.split(",") if part.strip())
        except ValueError:
            self.problems.append(f"{name}={raw!r}: must be comma-separated numbers")
            return tuple(default)

    def _bounded(self, name: str, value: Any, default: Any, min: Any, max: Any) -> Any:
        if min is not None and value < min:
            self.problems.append(f"{name}={value}: must be >= {min}")
            return default
        if max is not None and value > max:
            self.problems.append(f"{name}={value}: must be <= {max}")
            return default
        return value

    def fail(self, name: str, message: str) -> None:
        self.problems.append(f"{name}: {message}")

    def finish(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


@dataclass(frozen=True)
class CommonConfig:
    """Settings every service reads, under the same names."""

    host: str
    port: int
    api_keys: tuple[str, ...]
    max_sessions: int
    idle_timeout_s: float
    max_frame_bytes: int
    log_level: str
    log_content: bool
    # limits of docs/security.md "Limits" (defaults: off or generous, so nothing changes unless set)
    rate_limit_per_min: int = 0
    rate_limit_burst: int = 0
    cors_origins: tuple[str, ...] = ()
    max_buffered_audio_s: float = 60.0
    max_buffered_text_chars: int = 16384
    inference_timeout_s: float = 60.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    header_timeout_s: float = 10.0
    drain_timeout_s: float = 5.0
    trusted_proxies: tuple[str, ...] = DEFAULT_TRUSTED

    @classmethod
    def read(cls, env: EnvReader, port_var: str, default_port: int) -> CommonConfig:
        return cls(
            host=env.str("HOST", "127.0.0.1", "address to bind (containers pass --host 0.0.0.0)"),
            port=env.int(port_var, default_port, "port to listen on", min=1, max=65535),
            api_keys=env.list("API_KEYS", (), "comma-separated API keys; empty = no auth"),
            max_sessions=env.int("MAX_SESSIONS", 30, "concurrent WebSocket sessions before close 1013", min=1),
            idle_timeout_s=env.float("IDLE_TIMEOUT_S", 60.0, "close a WebSocket silent this long", min=1.0),
            max_frame_bytes=env.int("MAX_FRAME_BYTES", 1 << 20, "largest WebSocket message accepted", min=1024),
            log_level=env.str("LOG_LEVEL", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
            log_content=env.bool("LOG_CONTENT", False, "log transcripts and text (off: privacy)"),
            rate_limit_per_min=env.int(
                "RATE_LIMIT_PER_MIN",
                0,
                "requests + WebSocket opens a minute per client (key, else address); 0 = off",
                min=0,
            ),
            rate_limit_burst=env.int("RATE_LIMIT_BURST", 0, "token bucket size; 0 = RATE_LIMIT_PER_MIN", min=0),
            cors_origins=env.list("CORS_ORIGINS", (), "origins allowed by CORS on REST (`*` = any); empty = no CORS"),
            max_buffered_audio_s=env.float(
                "MAX_BUFFERED_AUDIO_SECS", 60.0, "audio one connection may hold in memory, seconds", min=1.0
            ),
            max_buffered_text_chars=env.int(
                "MAX_BUFFERED_TEXT_CHARS", 16384, "text one connection may hold queued, characters", min=64
            ),
            inference_timeout_s=env.float(
                "INFERENCE_TIMEOUT_S",
                60.0,
                "engine call (TTS: wait for next chunk) longer than this fails; 0 = off",
                min=0.0,
            ),
            breaker_failures=env.int(
                "BREAKER_FAILURES", 5, "consecutive engine failures that open the circuit breaker", min=1
            ),
            breaker_cooldown_s=env.float(
                "BREAKER_COOLDOWN_S", 30.0, "open breaker: seconds before one probe request is let through", min=0.1
            ),
            header_timeout_s=env.float(
                "HEADER_TIMEOUT_S", 10.0, "close a connection whose request head is not complete this long", min=0.5
            ),
            drain_timeout_s=env.float(
                "DRAIN_TIMEOUT_S",
                5.0,
                "on SIGTERM: seconds open sessions get to finish before they are cut (then exit 75, else 0)",
                min=0.0,
            ),
            trusted_proxies=_trusted_proxies(env),
        )


def _trusted_proxies(env: EnvReader) -> tuple[str, ...]:
    entries = env.list(
        "TRUSTED_PROXIES",
        DEFAULT_TRUSTED,
        "peers (IPs/CIDRs) whose X-Forwarded-For / X-Real-IP names the client; `none` = trust no one",
    )
    try:
        parse_networks(entries)
    except ValueError as exc:
        env.fail("TRUSTED_PROXIES", str(exc))
        return DEFAULT_TRUSTED
    return entries


def describe(readers: Mapping[str, EnvReader]) -> str:
    """Markdown table of every setting each service reads (for the README)."""
    lines = ["| service | variable | default | meaning |", "|---|---|---|---|"]
    for service, reader in readers.items():
        for doc in reader.docs:
            default = "" if doc.default in (None, "", ()) else f"`{doc.default}`"
            lines.append(f"| {service} | `{doc.name}` | {default} | {doc.help} |")
    return "\n".join(lines)

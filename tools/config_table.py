"""Prints the configuration table (every environment variable each service reads), straight from
the services' own `from_env`, so the README cannot drift from the code. `make docs-config`."""

from __future__ import annotations

import importlib

from services.common.config import EnvReader, SettingDoc

CONFIGS = (
    ("asr", "services.asr.config", "ASRConfig"),
    ("tts", "services.tts.config", "TTSConfig"),
    ("orchestrator", "services.orchestrator.config", "OrchestratorConfig"),
    ("orchestrator", "services.orchestrator.twilio.config", "TwilioConfig"),
)


def settings() -> dict[str, list[SettingDoc]]:
    out: dict[str, list[SettingDoc]] = {}
    for service, module, cls in CONFIGS:
        reader = EnvReader(environ={})
        getattr(importlib.import_module(module), cls).from_env(reader)
        out.setdefault(service, []).extend(reader.docs)
    return out


def table() -> str:
    per_service = settings()
    names = [{d.name for d in docs} for docs in per_service.values()]
    shared = set.intersection(*names)
    lines = ["| service | variable | default | meaning |", "|---|---|---|---|"]

    def row(service: str, doc: SettingDoc) -> str:
        default = "" if doc.default in (None, "", ()) else f"`{doc.default}`"
        return f"| {service} | `{doc.name}` | {default} | {doc.help} |"

    first = next(iter(per_service.values()))
    lines += [row("all", d) for d in first if d.name in shared]
    seen: set[tuple[str, str]] = set()
    for service, docs in per_service.items():
        for doc in docs:
            if doc.name not in shared and (service, doc.name) not in seen:
                seen.add((service, doc.name))
                lines.append(row(service, doc))
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())

"""Prints the configuration table (every environment variable each service reads), straight from
the services' own `from_env`, so the README cannot drift from the code. `make docs-config`."""

from __future__ import annotations

import importlib
import sys

from services.common.config import EnvReader, describe

SERVICES = ("asr", "tts", "orchestrator")


def readers() -> dict[str, EnvReader]:
    out: dict[str, EnvReader] = {}
    for name in SERVICES:
        module = importlib.import_module(f"services.{name}.config")
        config_cls = next(
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and hasattr(obj, "from_env") and obj.__module__ == module.__name__
        )
        reader = EnvReader(environ={})
        config_cls.from_env(reader)
        out[name] = reader
    return out


def main() -> None:
    sys.stdout.write(describe(readers()) + "\n")


if __name__ == "__main__":
    main()

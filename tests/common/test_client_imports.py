"""The client library may use the shared wire types and audio helpers in services/common, and
nothing else of the services: no server framework, no metrics, no model package. Checked in a
fresh interpreter, so what other tests imported does not hide a leak (docs/architecture.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALLOWED_SERVICES = {
    "services",
    "services.common",
    "services.common.audio",
    "services.common.errors",
    "services.common.validate",
    "services.common.protocol",
    "services.common.protocol.agent",
    "services.common.protocol.asr",
    "services.common.protocol.base",
    "services.common.protocol.tts",
}
SERVER_ONLY = {"starlette", "uvicorn", "prometheus_client", "faster_whisper", "ctranslate2", "onnxruntime",
               "torch", "chatterbox", "piper", "redis", "anthropic", "twilio", "wyoming"}  # fmt: skip

PROBE = """
import json, sys
import clients.voice, clients.voice.cli
print(json.dumps(sorted(sys.modules)))
"""


def test_the_client_library_loads_only_the_shared_modules():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    services = {m for m in loaded if m == "services" or m.startswith("services.")}
    assert services <= ALLOWED_SERVICES, sorted(services - ALLOWED_SERVICES)
    assert "services.common.protocol.base" in services  # the probe did import the client
    leaked = {m.split(".")[0] for m in loaded} & SERVER_ONLY
    assert not leaked, sorted(leaked)

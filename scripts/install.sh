#!/usr/bin/env bash
# Installs what is missing, idempotently: Debian packages, the virtualenv, the project's Python deps.
# Each step leaves a stamp keyed on its inputs, so a second `make test` skips straight to the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-asr,tts,orchestrator,dev}"
mkdir -p .stamps

APT_PACKAGES="redis-server nginx espeak-ng chromium chromium-driver sox libsox-fmt-all ssl-cert openssl"
need=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  echo "[install] Debian packages:$need"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[install] virtualenv .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip wheel
fi
key="$(cat pyproject.toml | sha256sum | cut -c1-16)-$EXTRAS"
if [ "$(cat .stamps/pip 2>/dev/null)" != "$key" ]; then
  echo "[install] Python packages (.[${EXTRAS}])"
  .venv/bin/pip install -q -e ".[${EXTRAS}]"
  echo "$key" > .stamps/pip
fi

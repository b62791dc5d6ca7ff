#!/usr/bin/env bash
# Installs what is missing, idempotently: Debian packages, the virtualenv, the project's Python deps.
# Each step leaves a stamp keyed on its inputs, so a second `make test` skips straight to the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Which extras: `make test` asks for all of them; `make run` for the light CPU set, plus the
# Chatterbox engine (torch) only where an NVIDIA GPU is present.
if [ -z "${EXTRAS:-}" ]; then
  EXTRAS="asr,tts,orchestrator"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && EXTRAS="$EXTRAS,chatterbox"
fi
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
# The stamp holds the pyproject hash and the extras installed: a subset of them installs nothing.
hash="$(sha256sum pyproject.toml | cut -c1-16)"
have_hash=""; have_extras=""
[ -f .stamps/pip ] && read -r have_hash have_extras < .stamps/pip || true
missing=""
if [ "${have_hash:-}" = "$hash" ]; then
  for e in ${EXTRAS//,/ }; do
    case ",${have_extras:-}," in *",$e,"*) ;; *) missing="$missing $e" ;; esac
  done
  all="$have_extras"
else
  missing="$EXTRAS"; all=""
fi
if [ -n "$missing" ]; then
  all="$(echo "${all:+$all,}$EXTRAS" | tr ',' '\n' | sort -u | paste -sd, -)"
  echo "[install] Python packages (.[${all}])"
  .venv/bin/pip install -q -e ".[${all}]"
  echo "$hash $all" > .stamps/pip
fi

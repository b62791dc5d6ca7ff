#!/usr/bin/env bash
# Makes .venv-pipecat (git-ignored): pipecat-ai 1.14 and its deps, every version pinned in
# bench/pipecat/requirements.txt, from the package index only (no model downloads: the bot uses
# the files in models/). Kept apart from .venv so pipecat's pins never touch the project's.
# Usage: bash bench/pipecat/setup.sh   (PYTHON=python3.11 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3.11}"
VENV=.venv-pipecat
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet "pip==26.3"
"$VENV/bin/python" -m pip install --quiet -r bench/pipecat/requirements.txt
"$VENV/bin/python" -m pip check
"$VENV/bin/python" -c "import pipecat, importlib.metadata as m; print('pipecat-ai', m.version('pipecat-ai'), 'in $VENV')"

#!/usr/bin/env bash
# Starts ASR (8001), TTS (8002) and the orchestrator (8000) on this machine; Ctrl-C stops all three.
# No Redis or nginx needed: voices go to a local directory unless REDIS_URL is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export ASR_URL="${ASR_URL:-http://127.0.0.1:${ASR_PORT:-8001}}"
export TTS_URL="${TTS_URL:-http://127.0.0.1:${TTS_PORT:-8002}}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
$PY -m services.asr & pids+=($!)
$PY -m services.tts & pids+=($!)
$PY -m services.orchestrator & pids+=($!)
echo "voice stack: agent http://127.0.0.1:${ORCHESTRATOR_PORT:-8000}/  ASR $ASR_URL  TTS $TTS_URL"
wait -n

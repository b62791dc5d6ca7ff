"""The Piper engine in-process (real piper-tts, the real joe voice) and the TTS_ENGINE=auto choice."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from services.common.config import MODELS_DIR
from services.common.text import split_phrases
from services.tts import config as tts_config
from services.tts.engine_choice import choose, hub_snapshot, is_generated, real_weights
from services.tts.engines.base import CancelToken, EngineError, SynthesisParams
from tests.helpers.procs import REPO

JOE = "en_US-joe-medium"
LONG = (
    "When the morning train finally arrived at the quiet station, the passengers stepped onto the platform, "
    "looked around for their friends, and walked slowly towards the old wooden gate near the river."
)


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory, models_dir):
    """The real joe voice, plus the same weights under a second name, a voice whose config does
    not parse and an .onnx without its config: two voices are found, the broken ones skipped."""
    root = tmp_path_factory.mktemp("piper-voices")
    source = MODELS_DIR / "piper" / f"{JOE}.onnx"
    for name in (JOE, "test_copy-medium"):
        (root / f"{name}.onnx").symlink_to(source)
        (root / f"{name}.onnx.json").symlink_to(source.with_name(source.name + ".json"))
    (root / "broken.onnx").symlink_to(source)
    (root / "broken.onnx.json").write_text("{not json")
    (root / "orphan.onnx").symlink_to(source)
    return root


@pytest.fixture(scope="module")
def engine(voices_dir):
    from services.tts.engines.piper import PiperEngine

    return PiperEngine(tts_config.PiperSettings(voices_dir=voices_dir, default_voice=JOE, threads=1, phrase_chars=60))


def test_voices_found_in_the_directory(engine):
    assert [v.id for v in engine.builtin_voices()] == [JOE, "test_copy-medium"]
    assert engine.default_voice == JOE and engine.sample_rate == 22050
    assert engine.registers_voices is False and engine.clones_voices is False


def test_a_long_sentence_streams_phrase_by_phrase(engine):
    phrases = split_phrases(LONG, 60)
    assert len(phrases) >= 3
    chunks = list(engine.stream(LONG, JOE, SynthesisParams(), CancelToken()))
    assert len(chunks) >= len(phrases)  # one chunk per phrase at least: the first comes after phrase one
    total = sum(len(c) for c in chunks)
    assert len(chunks[0]) < total / 2
    assert all(c.dtype == np.float32 and np.max(np.abs(c)) <= 1.0 for c in chunks)
    assert total / engine.sample_rate > 5.0


def test_cancel_stops_within_one_phrase(engine):
    cancel = CancelToken()
    chunks = engine.stream(LONG, JOE, SynthesisParams(), cancel)
    first = next(chunks)
    assert len(first) > 0
    cancel.cancel()
    assert list(chunks) == []  # nothing more once cancelled: not the rest of the sentence


def test_speed_shortens_the_audio(engine):
    text = "Speed changes how long this takes to say."
    normal = sum(len(c) for c in engine.stream(text, JOE, SynthesisParams(), CancelToken()))
    fast = sum(len(c) for c in engine.stream(text, JOE, SynthesisParams(speed=2.0), CancelToken()))
    assert fast < normal * 0.7


def test_cloning_is_refused(engine):
    with pytest.raises(EngineError) as err:
        engine.compute_conditionals(np.zeros(24000, np.float32), 24000)
    assert err.value.code == "cloning_unsupported"


def test_missing_voice_dir_or_default_voice_is_a_clear_error(voices_dir, tmp_path):
    from services.tts.engines.piper import PiperEngine

    with pytest.raises(EngineError) as err:
        PiperEngine(tts_config.PiperSettings(voices_dir=tmp_path))
    assert err.value.code == "engine_unavailable" and str(tmp_path) in err.value.message
    with pytest.raises(EngineError) as err:
        PiperEngine(tts_config.PiperSettings(voices_dir=voices_dir, default_voice="nobody"))
    assert err.value.code == "bad_voice" and JOE in err.value.message


# ------------------------------------------------------------------ TTS_ENGINE=auto
def test_auto_is_the_default_and_explicit_engines_are_kept():
    assert tts_config.load({}).engine == "auto"
    for name in ("piper", "espeak", "chatterbox"):
        assert choose(tts_config.load({"TTS_ENGINE": name})).engine == name


def test_generated_checkpoints_are_not_real_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    generated = tts_config.TINY_MODEL_DIRS["original"]
    if generated.exists():
        assert is_generated(str(generated))
    settings = tts_config.ChatterboxSettings(model_dir=str(generated))
    assert real_weights(settings) is None
    choice = choose(replace(tts_config.load({}), chatterbox=settings))
    assert choice.engine == "piper" and "weights" in choice.reason


def test_hub_cache_snapshot_counts_as_real_weights(tmp_path, monkeypatch):
    snap = tmp_path / "hub" / "models--ResembleAI--chatterbox" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for name in ("t3_cfg.safetensors", "s3gen.safetensors"):
        (snap / name).write_bytes(b"")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_snapshot("original") == snap and hub_snapshot("turbo") is None
    settings = real_weights(tts_config.ChatterboxSettings(model_dir=str(tts_config.TINY_MODEL_DIRS["original"])))
    assert settings is not None and settings.model_dir == ""  # from_pretrained finds the cached snapshot
    on_cpu = replace(tts_config.load({}), chatterbox=replace(settings, device="cpu"))
    choice = choose(on_cpu)
    assert choice.engine == "piper" and "TTS_DEVICE=cpu" in choice.reason


def test_auto_without_chatterbox_never_imports_torch(tmp_path):
    """With chatterbox-tts absent, auto picks Piper and torch stays unimported (a CPU install has none)."""
    code = (
        "import sys; sys.modules['chatterbox'] = None\n"
        "from services.tts import config; from services.tts.engine_choice import choose\n"
        "from services.tts.runtime import build_engine\n"
        "cfg = config.load({}); choice = choose(cfg); engine = build_engine(cfg, choice)\n"
        "print(choice.engine, engine.name, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["piper", "piper", "False"]
    # a CPU install has no torch at all: the whole app still builds and speaks with Piper
    blocked = "import sys; sys.modules['torch'] = None; sys.modules['chatterbox'] = None\n"
    app = "from services.tts.app import create_app; create_app(cfg)\n"
    out = subprocess.run([sys.executable, "-c", blocked + code + app], cwd=REPO, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["piper", "piper"]


def test_voice_config_is_read_from_the_json(voices_dir):
    from services.tts.engines.piper import find_voices

    found = find_voices(voices_dir)
    assert sorted(found) == [JOE, "test_copy-medium"]
    assert found[JOE].sample_rate == json.loads((voices_dir / f"{JOE}.onnx.json").read_text())["audio"]["sample_rate"]


def test_the_model_named_to_clients_is_never_a_server_path(tmp_path):
    from services.tts.runtime import describe_model

    checkpoint = tmp_path / "my-checkpoint"
    checkpoint.mkdir()
    for env, expected in (
        ({"TTS_ENGINE": "chatterbox", "TTS_MODEL_DIR": str(checkpoint)}, "chatterbox-original:my-checkpoint"),
        ({"TTS_ENGINE": "chatterbox", "TTS_MODEL_DIR": "hub"}, "chatterbox-original:ResembleAI/chatterbox"),
        ({"TTS_ENGINE": "piper"}, f"piper:{JOE}"),
        ({"TTS_ENGINE": "espeak"}, "espeak-ng:en-us"),
    ):
        cfg = tts_config.load(env)
        assert describe_model(cfg, choose(cfg)) == expected

"""Silero VAD, Smart Turn v3 and its features, and the shared transcriber, with real weights."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.asr import config as asr_config
from services.asr.features import N_FRAMES, N_MELS, last_window, smart_turn_features
from services.asr.transcriber import Request, Transcriber, decode_cap
from services.asr.turn import SmartTurn
from services.asr.vad import FRAME_S, FRAME_SAMPLES, SileroVAD
from tests.asr.conftest import COMPLETE, INCOMPLETE, said
from tests.helpers.speech import concat, silence


@pytest.fixture(scope="module")
def vad():
    return SileroVAD()


@pytest.fixture(scope="module")
def smart_turn(models_dir):
    return SmartTurn(str(models_dir / "smart-turn-v3.2-cpu.onnx"), threads=2)


def frames(audio: np.ndarray) -> np.ndarray:
    return audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES]


def test_vad_finds_the_speech_and_not_the_silence(vad, espeak):
    speech = said(COMPLETE)
    audio = frames(concat(silence(1.0), speech, silence(1.0)))
    probs = np.array(vad.stream().probabilities(audio))
    assert len(probs) == len(audio) // FRAME_SAMPLES
    assert np.all((probs >= 0) & (probs <= 1))
    speech_frames = np.nonzero(probs >= 0.5)[0]
    assert len(speech_frames) * FRAME_S > 0.5 * len(speech) / 16000
    first, last = speech_frames[0] * FRAME_S, (speech_frames[-1] + 1) * FRAME_S
    assert 0.9 <= first <= 1.2
    assert 1.0 + len(speech) / 16000 - 0.3 <= last <= 1.0 + len(speech) / 16000 + 0.3
    assert max(vad.stream().probabilities(frames(silence(2.0)))) < 0.2


def test_vad_state_carries_across_calls(vad):
    """Feeding a stream in pieces gives the same probabilities as feeding it at once."""
    audio = frames(concat(silence(0.3), said(COMPLETE), silence(0.3)))
    whole = vad.stream().probabilities(audio)
    stream = vad.stream()
    pieces = [
        p
        for i in range(0, len(audio), FRAME_SAMPLES * 7)
        for p in stream.probabilities(audio[i : i + FRAME_SAMPLES * 7])
    ]
    assert np.allclose(whole, pieces, atol=1e-6)
    with pytest.raises(ValueError):
        vad.stream().probabilities(np.zeros(100, np.float32))


def test_features_shape_and_front_padding():
    short = said(COMPLETE)
    features = smart_turn_features(short)
    assert features.shape == (N_MELS, N_FRAMES) and features.dtype == np.float32
    window = last_window(short)
    assert len(window) == 128000 and np.all(window[: 128000 - len(short)] == 0)
    assert np.array_equal(window[-len(short) :], short)
    long = concat(silence(3.0), short, short, short, short, short)
    assert np.array_equal(last_window(long), long[-128000:])


def test_features_match_transformers_whisper_extractor():
    """The reference Smart Turn was trained with: transformers' WhisperFeatureExtractor, chunk_length 8,
    do_normalize. Ours (faster-whisper's numpy extractor) must give the same numbers."""
    from transformers import WhisperFeatureExtractor

    reference = WhisperFeatureExtractor(chunk_length=8)
    for audio in (concat(silence(0.3), said(COMPLETE)), concat(*[said(INCOMPLETE)] * 6)):
        expected = reference(
            last_window(audio),
            sampling_rate=16000,
            return_tensors="np",
            padding="max_length",
            max_length=128000,
            truncation=True,
            do_normalize=True,
        ).input_features[0]
        assert expected.shape == (80, 800)
        assert np.abs(smart_turn_features(audio) - expected).max() < 1e-3


def test_smart_turn_probability(smart_turn):
    complete = smart_turn.probability(concat(silence(0.3), said(COMPLETE), silence(0.2)))
    incomplete = smart_turn.probability(concat(silence(0.3), said(INCOMPLETE), silence(0.2)))
    assert 0.0 <= incomplete <= 1.0 and 0.0 <= complete <= 1.0
    assert complete > 0.5 > incomplete  # real weights: a finished question vs. a trailing clause
    assert 0.0 <= smart_turn.probability(silence(1.0)) <= 1.0


@pytest.fixture(scope="module")
def transcriber(models_dir):
    """The default model (Whisper tiny.en, real weights)."""
    engine = Transcriber(asr_config.load({"ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "2", "ASR_BATCH_SIZE": "8"}))
    engine.load()
    assert engine.config.model == str(asr_config.LOCAL_MODEL)
    return engine


@pytest.fixture(scope="module")
def random_transcriber(models_dir):
    """The random-weight Whisper, asked for by name: a model that misbehaves (times past the audio),
    which real weights do too rarely to test the guards."""
    env = {"ASR_MODEL": str(asr_config.RANDOM_TEST_MODEL), "ASR_TEMPERATURES": "0.0", "ASR_CPU_THREADS": "2"}
    engine = Transcriber(asr_config.load(env))
    engine.load()
    return engine


def test_transcriber_clamps_every_time_into_the_audio(random_transcriber):
    """The random model emits times past the audio; what we report never is."""
    transcriber = random_transcriber
    for seconds in (0.5, 1.7, 3.0):
        audio = concat(said(COMPLETE), silence(1.0))[: int(seconds * 16000)]
        result = transcriber.run(Request(audio, "final", language="en", word_timestamps=True))
        assert result.duration == pytest.approx(len(audio) / 16000)
        for segment in result.segments:
            assert 0.0 <= segment.start <= segment.end <= result.duration
            for word in segment.words:
                assert segment.start <= word.start <= word.end <= segment.end
                assert 0.0 <= word.probability <= 1.0
        assert 0.0 <= result.confidence <= 1.0


def test_decode_cap_grows_with_audio_and_stays_inside_whisper():
    assert decode_cap(0.5, 8.0) < decode_cap(3.0, 8.0) < decode_cap(20.0, 8.0) <= 220
    assert decode_cap(600.0, 8.0) == decode_cap(30.0, 8.0)


def test_transcriber_partial_has_no_words_and_uses_one_temperature(transcriber):
    audio = said(COMPLETE)
    result = transcriber.run(Request(audio, "partial", word_timestamps=True, temperatures=(0.0, 0.5, 1.0)))
    assert result.words == []
    assert all(s.temperature == 0.0 for s in result.segments)


async def test_requests_waiting_together_run_as_one_batch(transcriber):
    """Four stream requests queued at once: one batched call, each caller gets its own clamped result."""
    from services.asr import metrics

    clips = [concat(silence(0.2), said(text), silence(0.2)) for text in (COMPLETE, INCOMPLETE, COMPLETE)]
    clips.append(silence(0.5))
    before = metrics.batch_size._sum.get()
    transcriber.start()
    try:
        requests = [Request(clips[0], "final", word_timestamps=True), Request(clips[1], "final", language="en")]
        requests += [Request(clips[2], "final", word_timestamps=True), Request(clips[3], "final")]
        requests += [Request(clips[2], "partial", word_timestamps=True), Request(clips[1], "partial")]
        # language None and "en" do not share a batch, nor finals and partials: calls of 3, 1 and 2
        results = await asyncio.gather(*(transcriber.transcribe(r) for r in requests))
    finally:
        await transcriber.stop()
    assert metrics.batch_size._sum.get() - before == 5
    for request, result in zip(requests, results, strict=True):
        assert result.duration == pytest.approx(len(request.audio) / 16000)
        assert result.language
        for segment in result.segments:
            assert 0.0 <= segment.start <= segment.end <= result.duration
            for word in segment.words:
                assert segment.start <= word.start <= word.end <= segment.end
    assert results[0].words and not results[4].words  # partials carry no words


async def test_a_long_file_does_not_hold_up_finals(transcriber):
    """A REST file is decoded in slices: a final queued while a 10-minute file runs is answered first."""
    clip = concat(said(COMPLETE), silence(1.0))
    long_audio = np.tile(clip, int(600 * 16000 / len(clip)) + 1)
    transcriber.start()
    try:
        file_task = asyncio.create_task(transcriber.transcribe(Request(long_audio, "file")))
        for _ in range(1000):  # until a worker has taken the file
            if transcriber.waiting["file"] == 0:
                break
            await asyncio.sleep(0.01)
        final = await transcriber.transcribe(Request(concat(silence(0.2), said(COMPLETE)), "final"))
        assert final.duration > 0
        assert not file_task.done(), "the final waited for the whole file"
        result = await file_task
    finally:
        await transcriber.stop()
    assert result.duration == pytest.approx(len(long_audio) / 16000)
    assert result.segments and result.segments[-1].end <= result.duration
    assert all(a.start <= b.start for a, b in zip(result.segments, result.segments[1:], strict=False))


def test_auto_threads_share_the_cores_between_the_workers_and_explicit_values_stay():
    from services.asr.transcriber import resolved

    cpu = asr_config.load({"ASR_DEVICE": "cpu"})
    assert (resolved(cpu, cores=2).workers, resolved(cpu, cores=2).cpu_threads) == (1, 2)
    assert resolved(cpu, cores=16).cpu_threads == 4
    two = asr_config.load({"ASR_DEVICE": "cpu", "ASR_WORKERS": "2"})
    assert (resolved(two, cores=2).cpu_threads, resolved(two, cores=1).cpu_threads) == (1, 1)
    cuda = resolved(asr_config.load({"ASR_DEVICE": "cuda", "ASR_COMPUTE_TYPE": "float16"}), cores=8)
    assert (cuda.workers, cuda.cpu_threads, cuda.batch_size) == (1, 4, 8)
    mine = resolved(asr_config.load({"ASR_DEVICE": "cpu", "ASR_WORKERS": "3", "ASR_CPU_THREADS": "2"}), cores=2)
    assert (mine.workers, mine.cpu_threads, mine.batch_size) == (3, 2, 1)


def test_batch_size_auto_is_off_on_cpu_and_explicit_values_stay():
    from services.asr.transcriber import batch_size

    assert batch_size(asr_config.load({"ASR_DEVICE": "cpu"})) == 1
    assert batch_size(asr_config.load({"ASR_DEVICE": "cuda", "ASR_COMPUTE_TYPE": "float16"})) == 8
    assert batch_size(asr_config.load({"ASR_DEVICE": "cpu", "ASR_BATCH_SIZE": "4"})) == 4

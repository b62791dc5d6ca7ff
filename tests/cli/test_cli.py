"""The `voice` command line as users run it: a subprocess against the real services on loopback.
Assertions are on output structure, exit codes and WAV properties, never on recognised words."""

from __future__ import annotations

import io
import json
import re
import wave

import numpy as np

from services.common.audio import decode_file, wav_bytes
from services.common.protocol.agent import WATERFALL_STAGES
from services.common.protocol.asr import EOT_REASONS
from tests.cli.conftest import API_KEY, run_voice
from tests.helpers.speech import speak


def read_wav(path) -> tuple[int, int, int, np.ndarray]:
    """(channels, sample width in bytes, rate, float samples)."""
    with wave.open(str(path)) as w:
        frames = w.readframes(w.getnframes())
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), np.frombuffer(frames, "<i2") / 32768.0


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def wav_seconds(path) -> float:
    return len(decode_file(path.read_bytes(), 16000)) / 16000


# ------------------------------------------------------------------ transcribe
def test_transcribe_stream_json_events(stack, question_wav):
    result = run_voice("transcribe", str(question_wav), "--url", stack.asr.ws_url, "--fast", "--json")
    assert result.returncode == 0, result.stderr
    events = json_lines(result.stdout)
    types = [e["type"] for e in events]
    assert "final" in types and types.count("speech_start") >= 1
    assert types.index("speech_start") < types.index("final")
    assert all(e["session_id"] for e in events)
    duration = wav_seconds(question_wav)
    for final in (e for e in events if e["type"] == "final"):
        assert 0 <= final["start"] <= final["end"] <= duration + 0.05
        assert final["end_of_turn"]["reason"] in EOT_REASONS
    assert "100%" in result.stderr  # the progress bar reached the end


def test_transcribe_streams_at_real_time_pace(stack, question_wav):
    result = run_voice("transcribe", str(question_wav), "--url", stack.asr.ws_url, "--no-partials")
    assert result.returncode == 0, result.stderr
    finals = [line for line in result.stdout.splitlines() if line.strip()]
    assert finals and all(re.match(r"^\[\s*\d+\.\d\d → \s*\d+\.\d\d\] ", line) for line in finals), result.stdout
    # paced like a microphone: it cannot finish before the audio's own duration
    assert result.seconds >= wav_seconds(question_wav) * 0.95
    assert "final(s) from" in result.stderr


def test_transcribe_rest(stack, question_wav):
    as_json = run_voice("transcribe", str(question_wav), "--url", stack.asr.url, "--rest", "--json")
    assert as_json.returncode == 0, as_json.stderr
    body = json_lines(as_json.stdout)
    assert len(body) == 1 and isinstance(body[0]["text"], str)
    verbose = run_voice("transcribe", str(question_wav), "--url", stack.asr.url, "--rest", "--format", "verbose_json")
    assert verbose.returncode == 0, verbose.stderr
    detail = json_lines(verbose.stdout)[0]
    assert abs(detail["duration"] - wav_seconds(question_wav)) < 0.05
    assert isinstance(detail["words"], list)  # the CLI asks for word timestamps
    assert all(0 <= w["start"] <= w["end"] <= detail["duration"] + 0.05 for w in detail["words"])


# ------------------------------------------------------------------ speak / register-voice
def test_speak_writes_a_wav(stack, tmp_path):
    out = tmp_path / "hello.wav"
    result = run_voice("speak", "Hello there. How are you?", "-o", str(out), "--url", stack.tts.ws_url, "--json")
    assert result.returncode == 0, result.stderr
    summary = json_lines(result.stdout)[-1]
    channels, width, rate, samples = read_wav(out)
    assert (channels, width) == (1, 2)
    assert rate == summary["sample_rate"] == 24000  # the TTS default
    assert abs(len(samples) / rate - summary["duration_s"]) < 0.01
    assert summary["duration_s"] > 0.5 and summary["chunks"] >= 1
    assert np.sqrt(np.mean(samples**2)) > 0.01  # speech, not silence

    out16 = tmp_path / "hello16.wav"
    result = run_voice("speak", "Hello there.", "-o", str(out16), "--url", stack.tts.ws_url, "--sample-rate", "16000")
    assert result.returncode == 0, result.stderr
    assert read_wav(out16)[2] == 16000
    assert "wrote" in result.stderr

    # REST: the streamed WAV's placeholder sizes are completed, so any reader takes the file
    rest = tmp_path / "rest.wav"
    result = run_voice("speak", "Hello there.", "-o", str(rest), "--url", stack.tts.url, "--rest")
    assert result.returncode == 0, result.stderr
    channels, width, rate, samples = read_wav(rest)
    assert (channels, width) == (1, 2) and len(samples) > 0
    assert rest.stat().st_size == 44 + len(samples) * 2  # the header's sizes are the file's


def test_register_voice_then_speak_with_it(stack, tmp_path):
    reference = tmp_path / "reference.wav"
    reference.write_bytes(wav_bytes(speak("This is my voice, recorded for the voice stack test.", 24000), 24000))
    result = run_voice("register-voice", "cli-test-voice", str(reference), "--url", stack.tts.url)
    assert result.returncode == 0, result.stderr
    registered = json_lines(result.stdout)[0]
    assert "cli-test-voice" in json.dumps(registered)

    out = tmp_path / "mine.wav"
    result = run_voice("speak", "Hello.", "-o", str(out), "--voice", "cli-test-voice", "--url", stack.tts.ws_url)
    assert result.returncode == 0, result.stderr
    assert len(read_wav(out)[3]) > 0


# ------------------------------------------------------------------ agent
def test_agent_answers_a_wav(stack, question_wav, tmp_path):
    out = tmp_path / "reply.wav"
    result = run_voice("agent", str(question_wav), "-o", str(out), "--url", stack.orchestrator.url, "--fast", "--json")
    assert result.returncode == 0, result.stderr
    frames = json_lines(result.stdout)
    kinds = [f["frame"] for f in frames]
    assert kinds[0] == "ready" and kinds[-1] == "summary"
    ready = frames[0]["data"]
    # the page and the CLI show which models run: the orchestrator passes on the upstreams' own ready
    assert ready["tts_engine"] == "espeak" and ready["tts_model"].startswith("espeak-ng:") and ready["asr_model"]
    finals = [f for f in frames if f["frame"] == "transcription" and f["final"]]
    assert finals and kinds.index("transcription") < kinds.index("llm_chunk") < kinds.index("done")
    answer = "".join(f["text"] for f in frames if f["frame"] == "llm_chunk" and not f["needs_followup"])
    assert answer.strip() == stack.claude.reply
    done = next(f["data"] for f in frames if f["frame"] == "done")
    assert all(done["stages_ms"][stage] is not None for stage in WATERFALL_STAGES)
    summary = frames[-1]["data"]
    channels, width, rate, samples = read_wav(out)
    assert (channels, width, rate) == (1, 2, ready["sample_rate"])
    assert abs(len(samples) / rate - summary["duration_s"]) < 0.001 and summary["duration_s"] > 0.5
    assert summary["turns"] == 1 and summary["transcripts"] == [f["text"] for f in finals]
    assert np.sqrt(np.mean(samples**2)) > 0.01


def test_agent_direct_mode_human_output(stack, question_wav, tmp_path):
    out = tmp_path / "echo.wav"
    result = run_voice(
        "agent", str(question_wav), "-o", str(out), "--url", stack.orchestrator.url, "--mode", "direct", "--fast"
    )
    assert result.returncode == 0, result.stderr
    assert "you:" in result.stderr and "latency ms from end of speech" in result.stderr
    assert "models: ASR " in result.stderr and "TTS espeak-ng:" in result.stderr
    assert read_wav(out)[2] > 0 and len(read_wav(out)[3]) > 0


def test_agent_with_only_silence_says_so_instead_of_hanging(stack, tmp_path):
    quiet = tmp_path / "quiet.wav"
    quiet.write_bytes(wav_bytes(np.zeros(32000, np.float32), 16000))
    result = run_voice("agent", str(quiet), "-o", str(tmp_path / "none.wav"), "--url", stack.orchestrator.url, "--fast")
    assert result.returncode == 1 and "did not answer" in result.stderr
    assert not (tmp_path / "none.wav").exists()


# ------------------------------------------------------------------ failures: one line, right exit code
def test_missing_and_undecodable_files_exit_2(tmp_path):
    missing = run_voice("transcribe", str(tmp_path / "nope.wav"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    bad = run_voice("agent", str(junk), "-o", str(tmp_path / "x.wav"))
    assert bad.returncode == 2 and "junk.wav" in bad.stderr and "Traceback" not in bad.stderr


def test_bad_options_exit_2(question_wav):
    language = run_voice("transcribe", str(question_wav), "--language", "x", "--url", "ws://127.0.0.1:9")
    assert language.returncode == 2 and "language" in language.stderr and "Traceback" not in language.stderr
    chunk = run_voice("transcribe", str(question_wav), "--chunk-ms", "0")
    assert chunk.returncode == 2 and "positive" in chunk.stderr


def test_api_key_from_flag_env_and_refusal(stack, question_wav, tmp_path):
    out = tmp_path / "k.wav"
    by_flag = run_voice("--api-key", API_KEY, "speak", "Hi.", "-o", str(out), "--url", stack.tts.ws_url, key=None)
    assert by_flag.returncode == 0, by_flag.stderr
    after_command = run_voice("speak", "Hi.", "-o", str(out), "--url", stack.tts.ws_url, "--api-key", API_KEY, key=None)
    assert after_command.returncode == 0, after_command.stderr
    for argv in (
        ("speak", "Hi.", "-o", str(out), "--url", stack.tts.ws_url),
        ("transcribe", str(question_wav), "--url", stack.asr.ws_url, "--fast"),
        ("agent", str(question_wav), "-o", str(out), "--url", stack.orchestrator.url, "--fast"),
    ):
        refused = run_voice(*argv, key="wrong-key")
        assert refused.returncode == 1, refused.stderr
        assert "refused the API key" in refused.stderr and "Traceback" not in refused.stderr
    rest = run_voice("transcribe", str(question_wav), "--url", stack.asr.url, "--rest", key="wrong-key")
    assert rest.returncode == 1 and "HTTP 401" in rest.stderr and "Traceback" not in rest.stderr


def test_unreachable_service_exits_1(tmp_path):
    result = run_voice("speak", "hi", "-o", str(tmp_path / "x.wav"), "--url", "ws://127.0.0.1:9")
    assert result.returncode == 1 and "cannot reach" in result.stderr and "Traceback" not in result.stderr


def test_env_urls_are_used(stack, tmp_path):
    out = tmp_path / "env.wav"
    result = run_voice("speak", "Hello.", "-o", str(out), env={"TTS_URL": stack.tts.ws_url})
    assert result.returncode == 0, result.stderr
    assert io.BytesIO(out.read_bytes()).read(4) == b"RIFF"

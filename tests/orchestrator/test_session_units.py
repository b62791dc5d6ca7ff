"""Pure pieces of the session: config parsing, history rules, what counts as heard, the waterfall."""

from __future__ import annotations

import pytest

from services.common.config import EnvReader
from services.common.protocol.base import ProtocolError
from services.orchestrator.config import OrchestratorConfig
from services.orchestrator.llm import Conversation
from services.orchestrator.session import Sentence, Turn, parse_session_config
from services.orchestrator.waterfall import Waterfall


@pytest.fixture(scope="module")
def settings() -> OrchestratorConfig:
    env = EnvReader({"DEFAULT_VOICE": "alice", "OUTPUT_SAMPLE_RATE": "16000"})
    config = OrchestratorConfig.from_env(env)
    env.finish()
    return config


def test_session_config_defaults_come_from_settings(settings):
    cfg = parse_session_config(None, settings)
    assert (cfg.mode, cfg.voice, cfg.sample_rate, cfg.ack) == ("agent", "alice", 16000, None)
    cfg = parse_session_config({"mode": "direct", "voice": None, "sample_rate": 8000, "ack": True}, settings)
    assert (cfg.mode, cfg.voice, cfg.sample_rate, cfg.ack) == ("direct", None, 8000, True)


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"mode": "chat"},
        {"voice": 7},
        {"sample_rate": 1000},
        {"ack": "yes"},
        {"language": "english please"},
        {"turn_detection": {"stop_secs": -1}},
        {"system_prompt": "x" * 9000},
        {"extra": 1},
    ],
)
def test_bad_session_configs_are_refused_with_a_code(settings, payload):
    with pytest.raises(ProtocolError) as exc:
        parse_session_config(payload, settings)
    assert exc.value.code in ("bad_config", "unknown_field") and exc.value.message


def test_history_alternates_and_is_trimmed():
    conv = Conversation(max_turns=2)
    conv.add("user", "one")
    conv.add("user", "two")  # the answer to "one" was cut before any audio: the turns merge
    assert conv.messages == [{"role": "user", "content": "one\ntwo"}]
    for i in range(3):
        conv.add("assistant", f"a{i}")
        conv.add("user", f"u{i}")
    assert len(conv.messages) <= 4 and conv.messages[0]["role"] == "user"
    conv.add("assistant", "long answer")
    conv.replace_last_assistant("long")
    assert conv.messages[-1] == {"role": "assistant", "content": "long"}


def _turn(*sentences: Sentence) -> Turn:
    turn = Turn(1, "q", Waterfall(1, "agent"))
    turn.sentences.extend(sentences)
    return turn


def test_heard_text_keeps_played_sentences_and_the_played_share_of_the_cut_one():
    full = Sentence(0, "One two three.", "r0", "answer", received_s=1.0, played_s=1.0, synth_done=True)
    cut = Sentence(1, "Four five six seven.", "r1", "answer", received_s=2.0, played_s=1.0, synth_done=True)
    never = Sentence(2, "Eight nine.", "r2", "answer", received_s=1.0, played_s=0.0, synth_done=True)
    assert _turn(full, cut, never).heard_text() == "One two three. Four five"
    ack = Sentence(0, "Mm-hmm.", "a", "ack", received_s=0.5, played_s=0.5, synth_done=True)
    assert _turn(ack).heard_text() == ""
    assert _turn(Sentence(0, "Not played.", "r", "answer", received_s=1.0, synth_done=True)).heard_text() == ""


def test_waterfall_payload_is_relative_to_speech_end():
    w = Waterfall(3, "agent")
    for i, stage in enumerate(("speech_end", "asr_final", "llm_first_token", "tts_first_audio")):
        w.mark(stage, at=100.0 + i * 0.25)
    w.mark("asr_final", at=500.0)  # first mark wins
    payload = w.payload(interrupted=False)
    assert payload["stages_ms"]["speech_end"] == 0.0
    assert payload["stages_ms"]["asr_final"] == 250.0 and payload["stages_ms"]["done"] is None
    assert payload["steps_ms"]["llm_first_token->tts_first_audio"] == 250.0
    assert payload["turn"] == 3 and payload["interrupted"] is False

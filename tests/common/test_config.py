"""services.common.config.EnvReader: typed reads, and every bad value reported by name."""

from __future__ import annotations

import pytest

from services.common.config import CommonConfig, ConfigError, EnvReader, describe


def test_defaults_and_typed_values():
    env = EnvReader(environ={"N": "5", "F": "0.5", "B": "yes", "L": "a, b,,c", "FS": "0.0,0.2"})
    assert env.int("N", 1) == 5
    assert env.float("F", 1.0) == 0.5
    assert env.bool("B", False) is True
    assert env.list("L") == ("a", "b", "c")
    assert env.floats("FS", (1.0,)) == (0.0, 0.2)
    assert env.str("MISSING", "dflt") == "dflt"
    env.finish()


def test_every_problem_is_named():
    env = EnvReader(
        environ={"ASR_PORT": "eighty", "MAX_SESSIONS": "0", "LOG_LEVEL": "LOUD", "LOG_CONTENT": "maybe", "X": "1,a"}
    )
    CommonConfig.read(env, "ASR_PORT", 8001)
    env.floats("X", (0.0,))
    with pytest.raises(ConfigError) as info:
        env.finish()
    text = str(info.value)
    for name in ("ASR_PORT", "MAX_SESSIONS", "LOG_LEVEL", "LOG_CONTENT", "X"):
        assert name in text
    assert len(info.value.problems) == 5
    assert isinstance(info.value, SystemExit)


def test_asr_config_errors_name_the_variable():
    from services.asr.config import load

    with pytest.raises(ConfigError) as info:
        load({"ASR_TEMPERATURES": "hot", "ASR_DEVICE": "tpu", "ASR_SMART_TURN_MODEL": "/nope.onnx"})
    text = str(info.value)
    assert "ASR_TEMPERATURES" in text and "ASR_DEVICE" in text and "ASR_SMART_TURN_MODEL" in text


def test_describe_lists_every_setting_with_help():
    from services.asr.config import ASRConfig

    env = EnvReader(environ={})
    ASRConfig.from_env(env)
    table = describe({"asr": env})
    assert "`ASR_MODEL`" in table and "`ASR_TEMPERATURES`" in table and "`MAX_SESSIONS`" in table
    assert all(doc.help for doc in env.docs)

"""TTS configuration: bad values stop the service with a message naming each variable."""

import pytest

from services.common.config import ConfigError
from services.tts import config


def test_defaults_are_valid():
    cfg = config.load({})
    assert cfg.common.port == 8002 and cfg.engine == "auto" and cfg.chatterbox.device == "auto"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TTS_ENGINE": "festival"}, "TTS_ENGINE"),
        ({"TTS_MODEL_VARIANT": "large"}, "TTS_MODEL_VARIANT"),
        ({"TTS_MAX_CONCURRENT": "0"}, "TTS_MAX_CONCURRENT"),
        ({"TTS_CHUNK_TOKENS": "ten"}, "TTS_CHUNK_TOKENS"),
        ({"TTS_FIRST_CHUNK_TOKENS": "60", "TTS_CHUNK_TOKENS": "50"}, "TTS_FIRST_CHUNK_TOKENS"),
        ({"TTS_MODEL_DIR": "/nonexistent/checkpoint"}, "TTS_MODEL_DIR"),
        ({"TTS_PORT": "70000"}, "TTS_PORT"),
    ],
)
def test_bad_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as err:
        config.load(env)
    assert any(problem.startswith(variable) for problem in err.value.problems)


def test_auto_model_dir_follows_the_variant():
    """TTS_MODEL_DIR=auto picks the generated checkpoint of the chosen variant, not the original's."""
    from services.tts.config import TINY_MODEL_DIRS, load

    for variant, directory in TINY_MODEL_DIRS.items():
        config = load({"TTS_MODEL_VARIANT": variant})
        assert config.chatterbox.model_dir == (str(directory) if directory.exists() else "")
    assert len(set(TINY_MODEL_DIRS.values())) == 3

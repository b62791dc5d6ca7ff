"""Python client library for the voice stack: async streaming clients for ASR, TTS and the agent,
typed events from `services.common.protocol`, reconnect with backoff, API keys, REST helpers.

    async with ASRStream("ws://localhost:8001", {"sample_rate": 16000}) as asr:
        await asr.send_audio(samples)
        await asr.end()
        async for event in asr:
            ...

See docs/clients.md."""

from ._stream import ServerError, StreamClosed
from .agent import AgentStream, pcm16_samples
from .asr import ASRStream, transcribe_file
from .backoff import Backoff, RetriesExhausted, retry
from .health import probe
from .tts import AudioFrame, TTSStream, delete_voice, list_voices, register_voice, speech

__all__ = [
    "AgentStream",
    "ASRStream",
    "AudioFrame",
    "Backoff",
    "RetriesExhausted",
    "ServerError",
    "StreamClosed",
    "TTSStream",
    "delete_voice",
    "list_voices",
    "pcm16_samples",
    "probe",
    "register_voice",
    "retry",
    "speech",
    "transcribe_file",
]

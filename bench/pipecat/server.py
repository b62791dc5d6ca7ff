"""A pipecat 1.14 voice agent on 127.0.0.1, the other side of `python -m bench.pipecat_agent`.

Runs in its own venv (`.venv-pipecat`, made by bench/pipecat/setup.sh), never in the project's,
so pipecat's pins cannot move ours. The parent (bench/pipecat_agent.py) starts it, plays the
microphone and times voice-to-voice on its own clock; this process only has to be a plain,
idiomatic pipecat bot built from pipecat's own parts:

    WebSocket server transport (raw 16 kHz PCM16 in, raw 24 kHz PCM16 out, a minimal serializer)
    → WhisperSTTService (faster-whisper, segmented on VAD stops)
    → user aggregator (SileroVADAnalyzer stop_secs 0.2; Smart Turn v3.2 or a plain VAD stop)
    → AnthropicLLMService (the real anthropic SDK, pointed at the fake Claude)
    → TTS (espeak-ng in a minimal TTSService subclass, or pipecat's PiperTTSService)
    → transport output → assistant aggregator.

Only what the comparison needs is changed from pipecat's defaults: the local model files (no
download), Whisper's CPU threads / beam / temperature set like our ASR (pipecat's service does
not expose them, so a small subclass opens the model), and no audio-out auto silence (it would
stream zeros and blur "first agent audio"). When the bot stops speaking a JSON text message
`{"type": "done", "events": {...}, "answer": {...}, "smart_turn": [...]}` goes to the client:
CLOCK_MONOTONIC times (shared by every process on the machine) of the turn's events and of the
answer's first token / audio, and Smart Turn's verdicts, for the stage split (StageClock).

Prints `READY <port>` on stdout once the WebSocket server listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from anthropic import AsyncAnthropic
from faster_whisper import WhisperModel
from loguru import logger
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMTextFrame,
    MetricsFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.services.anthropic.llm import AnthropicLLMService
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy, TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

IN_RATE = 16000
OUT_RATE = 24000
ESPEAK_WPM = 175  # our espeak engine's rate (services/tts/engines/espeak.py)
ESPEAK_CHUNK_BYTES = 2 * 1102  # ~50 ms at 22.05 kHz, the chunk our espeak engine hands on
SYSTEM = "You are a helpful voice assistant. Answer in one or two short sentences."


class RawPCMSerializer(FrameSerializer):
    """Binary messages are raw mono PCM16 (16 kHz in, the pipeline's output rate out); text
    messages out are the JSON of transport messages. Nothing else crosses the socket."""

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        if isinstance(frame, (OutputTransportMessageFrame, OutputTransportMessageUrgentFrame)):
            return None if self.should_ignore_frame(frame) else json.dumps(frame.message)
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes) and data and len(data) % 2 == 0:
            return InputAudioRawFrame(audio=data, sample_rate=IN_RATE, num_channels=1)
        return None


class LocalWhisperSTT(WhisperSTTService):
    """pipecat's WhisperSTTService on a local model directory with our ASR's decode settings:
    the service opens WhisperModel(name, device, compute_type) only, so threads, beam and
    temperature are set here; its segmenting, filtering and frames stay pipecat's."""

    def __init__(self, *, model_dir: str, cpu_threads: int, beam_size: int, temperature: float, **kwargs):
        self._model_dir = model_dir
        self._cpu_threads = cpu_threads
        self._decode = {"beam_size": beam_size, "temperature": temperature}
        super().__init__(
            settings=WhisperSTTService.Settings(model=model_dir), device="cpu", compute_type="int8", **kwargs
        )

    def _load(self) -> None:
        model = WhisperModel(self._model_dir, device="cpu", compute_type="int8", cpu_threads=self._cpu_threads)
        self._model = _Decoding(model, self._decode)


class _Decoding:
    """The loaded model with fixed decode keywords added to every transcribe() call."""

    def __init__(self, model: WhisperModel, decode: dict) -> None:
        self._model = model
        self._decode = decode

    def transcribe(self, audio, **kwargs):
        return self._model.transcribe(audio, **{**self._decode, **kwargs})

    def __getattr__(self, name: str):
        return getattr(self._model, name)


class EspeakTTSService(TTSService):
    """espeak-ng as a subprocess, like our espeak engine: text on stdin, WAV on stdout, read
    while it speaks, handed on in ~50 ms chunks and resampled by pipecat to the output rate."""

    def __init__(self, *, voice: str = "en-us", **kwargs) -> None:
        settings = TTSSettings(model=None, voice=voice, language=None)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs)
        self._voice = voice

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str):
        # a plain Popen, as our engine does: asyncio's child watcher reported "Unknown child
        # process" for these short-lived espeak-ng runs; the spawn and the reaping are short
        proc = subprocess.Popen(  # noqa: ASYNC220
            ["espeak-ng", "--stdout", "-v", self._voice, "-s", str(ESPEAK_WPM)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        fd = proc.stdout.fileno()

        async def chunks():
            while True:  # the blocking reads run in a thread, like PiperTTSService's synthesis
                data = await asyncio.to_thread(os.read, fd, ESPEAK_CHUNK_BYTES)
                if not data:
                    return
                yield data

        try:
            proc.stdin.write(text.encode("utf-8"))
            proc.stdin.close()
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                chunks(), strip_wav_header=True, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except Exception as exc:  # a broken subprocess is an error frame, as in pipecat's own TTSs
            yield ErrorFrame(error=f"espeak-ng failed: {exc.__class__.__name__}")
        finally:
            await self.stop_ttfb_metrics()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


class StageClock(BaseObserver):
    """CLOCK_MONOTONIC times of what happened since the last answer, seen as frames are pushed:
    every user-side event (a pause may stop the VAD twice, and the bot may end the turn there),
    each Smart Turn verdict, and the first LLM token / TTS audio / bot speech after the latest
    turn decision. The client reads them against its own end of speech."""

    USER_EVENTS = (
        (VADUserStartedSpeakingFrame, "vad_started"),
        (VADUserStoppedSpeakingFrame, "vad_stopped"),
        (TranscriptionFrame, "transcription"),
        (UserStartedSpeakingFrame, "turn_start"),
        (UserStoppedSpeakingFrame, "turn_end"),
    )
    ANSWER_STAGES = (
        (LLMTextFrame, "llm_first_token"),
        (TTSAudioRawFrame, "tts_first_audio"),
        (BotStartedSpeakingFrame, "bot_started"),
    )

    def __init__(self) -> None:
        super().__init__()
        self.take()

    async def on_push_frame(self, data: FramePushed) -> None:
        if not data.first_push:
            return
        frame, now = data.frame, time.monotonic()
        for kind, name in self.USER_EVENTS:
            if isinstance(frame, kind) and data.direction == FrameDirection.DOWNSTREAM:  # once per broadcast
                self.events[name].append(now)
                if name == "turn_end":
                    self.answer = {}  # what follows answers this decision
                return
        if isinstance(frame, MetricsFrame):
            for item in frame.data:
                if isinstance(item, TurnMetricsData):
                    self.smart_turn.append({"at": now, "complete": item.is_complete, "p": item.probability})
            return
        for kind, name in self.ANSWER_STAGES:
            if isinstance(frame, kind) and name not in self.answer:
                self.answer[name] = now

    def take(self) -> dict:
        taken = {"events": getattr(self, "events", {}), "answer": getattr(self, "answer", {})}
        taken["smart_turn"] = getattr(self, "smart_turn", [])
        self.events: dict[str, list[float]] = {name: [] for _kind, name in self.USER_EVENTS}
        self.answer: dict[str, float] = {}
        self.smart_turn: list[dict] = []
        return taken


class TurnReporter(FrameProcessor):
    """Just before the output transport: when it reports the bot stopped speaking (upstream),
    tells the client the turn is over, with the turn's stage times."""

    def __init__(self, clock: StageClock) -> None:
        super().__init__()
        self._clock = clock

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, BotStoppedSpeakingFrame) and direction == FrameDirection.UPSTREAM:
            message = {"type": "done", **self._clock.take()}
            await self.push_frame(OutputTransportMessageUrgentFrame(message=message), FrameDirection.DOWNSTREAM)


def build_tts(engine: str, models: Path) -> TTSService:
    if engine == "espeak":
        return EspeakTTSService()
    if engine == "piper":
        from pipecat.services.piper.tts import PiperTTSService

        # the voice file is found in download_dir, so nothing is downloaded
        return PiperTTSService(
            settings=PiperTTSService.Settings(voice="en_US-joe-medium"), download_dir=models / "piper"
        )
    raise SystemExit(f"unknown TTS engine {engine!r}")


async def serve(args: argparse.Namespace) -> None:
    models = Path(args.models)
    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=RawPCMSerializer(),
            audio_in_enabled=True,
            audio_in_sample_rate=IN_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=OUT_RATE,
            audio_out_auto_silence=False,
        ),
        host="127.0.0.1",
        port=args.port,
    )
    stt = LocalWhisperSTT(
        model_dir=str(models / "whisper-tiny.en"),
        cpu_threads=args.threads,
        beam_size=args.beam_size,
        temperature=args.temperature,
    )
    client = AsyncAnthropic(api_key="dummy", base_url=args.claude_url, max_retries=0)
    llm = AnthropicLLMService(
        api_key="dummy", client=client, settings=AnthropicLLMService.Settings(system_instruction=SYSTEM)
    )
    tts = build_tts(args.tts, models)
    if args.turn == "smart_turn":
        analyzer = LocalSmartTurnAnalyzerV3(smart_turn_model_path=str(models / "smart-turn-v3.2-cpu.onnx"))
        stop = [TurnAnalyzerUserTurnStopStrategy(turn_analyzer=analyzer)]
    else:  # plain VAD: the turn ends at the VAD stop (stop_secs), once a transcript is in
        stop = [SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=0.0)]
    context = LLMContext()
    user, assistant = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=args.stop_secs)),
            user_turn_strategies=UserTurnStrategies(stop=stop),
        ),
    )
    clock = StageClock()
    pipeline = Pipeline([transport.input(), stt, user, llm, tts, TurnReporter(clock), transport.output(), assistant])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=OUT_RATE),
        observers=[clock],
        enable_rtvi=False,
        idle_timeout_secs=None,
    )

    @transport.event_handler("on_websocket_ready")
    async def on_ready(_transport) -> None:
        print(f"READY {args.port}", flush=True)

    @transport.event_handler("on_client_connected")
    async def on_connected(_transport, _websocket) -> None:
        context.set_messages([])  # each session starts with an empty history
        clock.take()

    runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)
    await runner.add_workers(worker)
    await runner.run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--claude-url", required=True)
    parser.add_argument("--models", default=str(Path(__file__).resolve().parents[2] / "models"))
    parser.add_argument("--tts", default="espeak", choices=("espeak", "piper"))
    parser.add_argument("--turn", default="smart_turn", choices=("smart_turn", "vad"))
    parser.add_argument("--stop-secs", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.0)
    args = parser.parse_args()
    logger.remove()  # pipecat logs transcripts at DEBUG: warnings and errors only
    logger.add(sys.stderr, level=os.environ.get("PIPECAT_LOG_LEVEL", "WARNING"))
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

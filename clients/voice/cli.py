"""`voice`: the command line for the voice stack, built on the client library in this package.

    voice transcribe talk.wav                 stream a file to the ASR at real-time pace
    voice transcribe talk.mp3 --fast --json   as fast as possible, one JSON event per line
    voice transcribe talk.wav --rest          the OpenAI-compatible REST endpoint instead
    voice speak "Hello there" -o hi.wav --voice alice
    voice register-voice alice reference.wav
    voice agent question.wav -o reply.wav     talk to the agent, save its spoken answer

Service URLs come from --url, else ASR_URL / TTS_URL / ORCHESTRATOR_URL, else localhost on the
default ports; the API key from --api-key, else VOICE_API_KEY. Results go to stdout, progress and
partial transcripts to stderr, so `voice transcribe x.wav > x.txt` keeps only the finals.
Exit status: 0 done, 1 the server or the connection failed, 2 bad arguments or input file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np
from websockets.exceptions import InvalidHandshake

from services.common.audio import AudioFormatError, decode_file, float_to_int16, wav_bytes
from services.common.protocol import asr, tts
from services.common.protocol.agent import FLAG_FINAL, Frame, FrameType
from services.common.protocol.base import Error, Message, ProtocolError

from . import AgentStream, ASRStream, AudioFrame, ServerError, StreamClosed, TTSStream, pcm16_samples
from . import register_voice as rest_register_voice
from . import transcribe_file as rest_transcribe
from ._ws import auth_headers, http_url

DEFAULT_URLS = {
    "asr": ("ASR_URL", "ws://127.0.0.1:8001"),
    "tts": ("TTS_URL", "ws://127.0.0.1:8002"),
    "agent": ("ORCHESTRATOR_URL", "ws://127.0.0.1:8000"),
}
INPUT_RATE = 16000


class CLIError(Exception):
    """A failure worth one line on stderr and a non-zero exit, not a traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------ output helpers
class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per 10% otherwise (logs, CI).
    Other output goes through `note` (stderr) or `out` (stdout) so it never lands inside the bar."""

    def __init__(self, total: float, label: str, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self.total = max(total, 1e-9)
        self.label = label
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.done = 0.0
        self.shown = False  # a bar is drawn on the current terminal line
        self.last_step = -1

    def _line(self) -> str:
        frac = min(1.0, self.done / self.total)
        filled = int(frac * 30)
        bar = "#" * filled + "-" * (30 - filled)
        return f"{self.label} [{bar}] {frac * 100:3.0f}% {self.done:.1f}/{self.total:.1f} s"

    def update(self, done: float) -> None:
        self.done = done
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + self._line())
            self.shown = True
        else:
            step = int(min(1.0, done / self.total) * 10)
            if step == self.last_step:
                return
            self.last_step = step
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def _hide(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _redraw(self) -> None:
        if self.shown:
            self.stream.write(self._line())
            self.stream.flush()

    def note(self, text: str) -> None:
        """A line on stderr (a partial transcript, a warning)."""
        self._hide()
        self.stream.write(text + "\n")
        self._redraw()

    def out(self, text: str) -> None:
        """A line of results on stdout."""
        self._hide()
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        self._redraw()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
            self.shown = False


def emit_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False), flush=True)


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}", 2) from None


def write_file(path: str, data: bytes) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror}", 2) from None


def read_audio_file(path: str, rate: int = INPUT_RATE) -> tuple[bytes, np.ndarray]:
    """The file's bytes (for REST uploads) and its audio as mono float32 at `rate`."""
    data = read_file(path)
    try:
        return data, decode_file(data, rate)
    except AudioFormatError as exc:
        raise CLIError(f"{path}: {exc.message}", 2) from None


def write_wav(path: str, samples: np.ndarray, rate: int) -> None:
    write_file(path, wav_bytes(samples, rate))


def fix_wav_sizes(path: str) -> None:
    """A WAV streamed before its length was known carries placeholder sizes (0xFFFFFFFF); once the
    whole file is written, put the real RIFF and data sizes into its header, so every reader
    (sox, wave, browsers) sees the true duration."""
    try:
        with open(path, "r+b") as f:
            head = f.read(4096)
            size = f.seek(0, os.SEEK_END)
            if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            pos = 12
            while pos + 8 <= len(head):
                chunk, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
                if chunk == b"data":
                    f.seek(pos + 4)
                    f.write(min(size - pos - 8, 0xFFFFFFFF).to_bytes(4, "little"))
                    f.seek(4)
                    f.write(min(size - 8, 0xFFFFFFFF).to_bytes(4, "little"))
                    return
                pos += 8 + length + (length & 1)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror}", 2) from None


class Status:
    """One status line on stderr while a command waits for the server: redrawn in place on a
    terminal; on a pipe or log, a line when the kind of wait changes and then every `every_s`."""

    def __init__(self, enabled: bool = True, stream: TextIO = sys.stderr, every_s: float = 10.0) -> None:
        self.enabled = enabled
        self.stream = stream
        self.tty = stream.isatty()
        self.every_s = every_s
        self._key: str | None = None
        self._last = 0.0
        self._shown = False

    def show(self, text: str, key: str | None = None) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._shown = True
        else:
            key = key or text
            now = time.monotonic()
            if key == self._key and now - self._last < self.every_s:
                return
            self._key, self._last = key, now
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def gave_up(url: str, timeout: float, waiting_for: str) -> CLIError:
    return CLIError(
        f"no {waiting_for} from {url} within {timeout:g} s (the server may still be loading its model, "
        "or be busy); giving up — --timeout sets how long to wait"
    )


async def pace(t0: float, seconds: float) -> None:
    """Sleeps until `seconds` of audio have been due since `t0` (real-time streaming)."""
    delay = t0 + seconds - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# ------------------------------------------------------------------ transcribe
async def cmd_transcribe(args: argparse.Namespace) -> int:
    if args.rest:  # the server decodes the upload itself
        return await transcribe_rest(args, read_file(args.file))
    _, samples = read_audio_file(args.file)
    config: dict[str, Any] = {
        "sample_rate": INPUT_RATE,
        "encoding": "pcm_s16le",
        "language": args.language,
        "partials": not args.no_partials,
    }
    if args.turn_detection:
        config["turn_detection"] = {"mode": args.turn_detection}
    duration = len(samples) / INPUT_RATE
    progress = Progress(duration, "sent", enabled=not args.quiet)
    finals = 0
    async with ASRStream(args.url, config, api_key=args.api_key) as stream:
        sender = asyncio.create_task(send_file_to_asr(stream, samples, args, progress))
        try:
            async for event in stream:
                finals += isinstance(event, asr.Final)
                show_asr_event(event, args, progress)
                if isinstance(event, Error) and event.fatal:
                    raise CLIError(f"ASR error {event.code}: {event.message}")
        finally:
            await stop_sender(sender, progress)
    if not args.quiet:
        print(f"{finals} final(s) from {duration:.2f} s of audio", file=sys.stderr)
    return 0


async def send_file_to_asr(stream: ASRStream, samples: np.ndarray, args: argparse.Namespace, progress: Progress):
    await send_pcm(stream.send_audio, samples, args, progress)
    await stream.end()  # the server flushes, sends the last final, and closes


async def stop_sender(sender: asyncio.Task, progress: Progress) -> None:
    """The file sender ends with the command, whichever way the command ends."""
    if not sender.done():
        sender.cancel()
    with contextlib.suppress(asyncio.CancelledError, StreamClosed):
        await sender
    progress.close()


async def send_pcm(send, samples: np.ndarray, args: argparse.Namespace, progress: Progress) -> None:
    """16 kHz samples → s16le chunks of --chunk-ms, paced at real time unless --fast."""
    step = INPUT_RATE * args.chunk_ms // 1000
    pcm = float_to_int16(samples).astype("<i2").tobytes()
    t0 = time.monotonic()
    for start in range(0, len(samples), step):
        await send(pcm[start * 2 : (start + step) * 2])
        sent = min(len(samples), start + step) / INPUT_RATE
        progress.update(sent)
        if not args.fast:
            await pace(t0, sent)


def show_asr_event(event: Message, args: argparse.Namespace, progress: Progress) -> None:
    if args.json:
        emit_json(event.to_dict())
        return
    if isinstance(event, asr.Partial):
        if not args.quiet:
            progress.note(f"  … {event.text}")
    elif isinstance(event, asr.Final):
        progress.out(f"[{event.start:7.2f} → {event.end:7.2f}] {event.text}")
    elif isinstance(event, Error):
        progress.note(f"error {event.code}: {event.message}")


async def transcribe_rest(args: argparse.Namespace, data: bytes) -> int:
    fields: dict[str, Any] = {"language": args.language}
    if args.format == "verbose_json":
        fields["timestamp_granularities[]"] = "word"
    result = await rest_transcribe(
        args.url, data, filename=Path(args.file).name, api_key=args.api_key, response_format=args.format, **fields
    )
    if isinstance(result, str):
        sys.stdout.write(result if result.endswith("\n") else result + "\n")
    elif args.json or args.format == "verbose_json":
        emit_json(result)
    else:
        print(result.get("text", ""))
    return 0


# ------------------------------------------------------------------ speak
async def cmd_speak(args: argparse.Namespace) -> int:
    status = Status(enabled=not args.quiet)
    try:
        if args.rest:
            return await speak_rest(args, status)
        return await speak_stream(args, status)
    finally:
        status.done()


async def speak_stream(args: argparse.Namespace, status: Status) -> int:
    config: dict[str, Any] = {"encoding": "pcm_f32le"}
    if args.sample_rate:
        config["sample_rate"] = args.sample_rate
    if args.voice:
        config["voice_id"] = args.voice
    options = {"voice_id": args.voice} if args.voice else {}
    parts: list[np.ndarray] = []
    first_audio_ms = None
    status.show(f"connecting to {args.url} …")
    async with TTSStream(args.url, config, api_key=args.api_key) as stream:
        rate = int(getattr(stream.ready, "sample_rate", tts.DEFAULT_SAMPLE_RATE))
        engine = getattr(stream.ready, "engine", "") or "?"
        model = getattr(stream.ready, "model", "")
        t0 = time.monotonic()
        request_id = await stream.synthesize(args.text, **options)
        while True:
            waiting = "first audio" if not parts else "more audio"
            event = await recv_within(
                stream,
                args.timeout,
                lambda s, w=waiting: status.show(f"{engine} {model}: waiting for {w} … {s:.0f} s", key=w),
            )
            if event is None:
                raise gave_up(args.url, args.timeout, "audio" if not parts else "more audio")
            if isinstance(event, AudioFrame) and event.request_id == request_id:
                if first_audio_ms is None:
                    first_audio_ms = (time.monotonic() - t0) * 1000
                parts.append(event.samples())
                rate = event.sample_rate
                got = sum(len(p) for p in parts) / rate
                status.show(f"{engine} {model}: chunk {len(parts)}, {got:.2f} s of audio", key="audio")
            elif isinstance(event, tts.SynthesisComplete) and event.request_id == request_id:
                break
            elif isinstance(event, Error):
                raise CLIError(f"TTS error {event.code}: {event.message}")
    status.done()
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    write_wav(args.output, audio, rate)
    summary = {
        "output": args.output,
        "sample_rate": rate,
        "duration_s": round(len(audio) / rate, 3),
        "chunks": len(parts),
        "first_audio_ms": round(first_audio_ms, 1) if first_audio_ms is not None else None,
        "engine": engine,
        "model": model,
    }
    if args.json:
        emit_json(summary)
    elif not args.quiet:
        print(f"wrote {args.output}: {summary['duration_s']} s at {rate} Hz in {len(parts)} chunk(s), "
              f"first audio after {summary['first_audio_ms']} ms ({engine} {model})", file=sys.stderr)  # fmt: skip
    return 0


async def recv_within(stream: TTSStream, timeout: float, waiting) -> AudioFrame | Message | None:
    """The next event, or None when nothing came for `timeout` s; `waiting(seconds)` runs each
    second meanwhile (the status line). A stream that ends is an error: the audio is incomplete."""
    task = asyncio.ensure_future(stream.recv())
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=min(1.0, timeout))
            if done:
                try:
                    return task.result()
                except StreamClosed as exc:
                    raise CLIError(f"the stream closed before the audio was complete: {exc}") from None
            waited = time.monotonic() - started
            if waited >= timeout:
                return None
            waiting(waited)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def speak_rest(args: argparse.Namespace, status: Status) -> int:
    """POST /v1/audio/speech, written to the file as it streams in; the header sizes are fixed
    once the length is known. `--timeout` bounds each wait for the next bytes."""
    body = {"model": "tts-1", "input": args.text, "voice": args.voice or "default", "response_format": "wav"}
    headers = auth_headers(args.api_key)
    base = http_url(args.url)
    received = 0
    status.show(f"waiting for {base} …")
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(args.timeout, connect=10.0)) as client:
        try:
            async with client.stream("POST", base + "/v1/audio/speech", json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    response.raise_for_status()
                rate = int(response.headers.get("x-sample-rate") or tts.DEFAULT_SAMPLE_RATE)
                try:
                    out = open(args.output, "wb")  # noqa: SIM115, ASYNC230 (closed below; a CLI, one file)
                except OSError as exc:
                    raise CLIError(f"cannot write {args.output}: {exc.strerror}", 2) from None
                with out:
                    async for part in response.aiter_bytes():
                        out.write(part)
                        received += len(part)
                        if received > 44:  # past the WAV header: audio is coming
                            status.show(f"received {(received - 44) / 2 / rate:.2f} s of audio", key="audio")
        except httpx.TimeoutException:
            raise gave_up(base, args.timeout, "audio" if received <= 44 else "more audio") from None
    status.done()
    fix_wav_sizes(args.output)
    if not args.quiet:
        seconds = max(0, received - 44) / 2 / rate
        print(f"wrote {args.output}: {seconds:.3f} s at {rate} Hz ({received} bytes)", file=sys.stderr)
    return 0


# ------------------------------------------------------------------ register-voice
async def cmd_register_voice(args: argparse.Namespace) -> int:
    wav = read_file(args.file)
    result = await rest_register_voice(args.url, wav, voice_id=args.id, name=args.name, api_key=args.api_key)
    emit_json(result if isinstance(result, dict) else {"result": result})
    return 0


# ------------------------------------------------------------------ agent
class AgentTurnCollector:
    """Follows the agent's frames until the user's audio has been answered: prints what it hears,
    keeps the agent's audio, and knows when the conversation has gone quiet."""

    def __init__(self, args: argparse.Namespace, progress: Progress) -> None:
        self.args = args
        self.progress = progress
        self.audio: list[np.ndarray] = []
        self.dones: list[dict[str, Any]] = []
        self.finals: list[str] = []
        self.agent_text = ""
        self.turn_open = False  # the user spoke and the agent has not finished answering
        self.empty_turns = 0
        self.errors: list[dict[str, Any]] = []

    def handle(self, frame: Frame) -> None:
        kind = frame.type
        if kind == FrameType.TTS_AUDIO:
            self.audio.append(pcm16_samples(frame))
            return
        if self.args.json:
            emit_json(frame_to_json(frame))
        if kind == FrameType.TRANSCRIPTION:
            if frame.flags & FLAG_FINAL:
                self.finals.append(frame.text())
                self.turn_open = bool(frame.text().strip())  # an empty final starts no answer
                self.say(f"you:   {frame.text()}")
            elif not self.args.quiet and not self.args.json:
                self.progress.note(f"  … {frame.text()}")
        elif kind == FrameType.LLM_CHUNK:
            self.agent_text += frame.text()
        elif kind == FrameType.DONE:
            self.dones.append(frame.json() or {})
            self.turn_open = False
            if self.agent_text:
                self.say(f"agent: {self.agent_text.strip()}")
                self.agent_text = ""
            self.say("        " + format_waterfall(self.dones[-1]))
        elif kind == FrameType.EVENT:
            event = frame.json() or {}
            if event.get("event") == "empty_turn":
                self.empty_turns += 1
                self.turn_open = False
        elif kind == FrameType.ERROR:
            err = frame.json() or {}
            self.errors.append(err)
            if not self.args.json:
                self.progress.note(f"error {err.get('code')}: {err.get('message')}")
            if err.get("fatal"):
                raise CLIError(f"agent error {err.get('code')}: {err.get('message')}")

    def say(self, line: str) -> None:
        if not self.args.json:
            self.progress.note(line)


def frame_to_json(frame: Frame) -> dict[str, Any]:
    name = frame.type.name.lower()
    if frame.type in (FrameType.READY, FrameType.DONE, FrameType.EVENT, FrameType.ERROR):
        return {"frame": name, "data": frame.json()}
    if frame.type in (FrameType.TRANSCRIPTION, FrameType.LLM_CHUNK):
        return {"frame": name, "text": frame.text(), "final": frame.is_final, "needs_followup": frame.needs_followup}
    return {"frame": name, "bytes": len(frame.payload)}


def format_waterfall(done: dict[str, Any]) -> str:
    stages = done.get("stages_ms") or {}
    parts = [f"{name} {value:.0f}" for name, value in stages.items() if isinstance(value, (int, float))]
    return "latency ms from end of speech: " + ", ".join(parts) if parts else "latency: n/a"


async def cmd_agent(args: argparse.Namespace) -> int:
    _, samples = read_audio_file(args.file)
    config: dict[str, Any] = {"mode": args.mode}
    if args.voice:
        config["voice"] = args.voice
    duration = len(samples) / INPUT_RATE
    progress = Progress(duration, "sent", enabled=not args.quiet and not args.json)
    collector = AgentTurnCollector(args, progress)
    sent_all = asyncio.Event()
    async with AgentStream(args.url, api_key=args.api_key) as agent:
        try:
            ready = await agent.start(config)
        except ServerError as exc:
            raise CLIError(f"agent refused the session: {exc}") from None
        if args.json:
            emit_json({"frame": "ready", "data": ready})
        elif not args.quiet:
            models = [
                f"{k} {ready[f]}"
                for k, f in (("ASR", "asr_model"), ("TTS", "tts_model"), ("LLM", "llm"))
                if ready.get(f)
            ]
            if models:
                progress.note("models: " + " · ".join(models))
        rate = int(ready.get("sample_rate") or 24000)
        sender = asyncio.create_task(send_file_to_agent(agent, samples, args, progress, sent_all))
        try:
            await asyncio.wait_for(receive_agent_turns(agent, collector, sent_all, args.settle), args.timeout)
        except asyncio.TimeoutError:
            raise CLIError(f"no complete answer within {args.timeout:.0f} s") from None
        finally:
            await stop_sender(sender, progress)
    if not collector.dones:
        raise CLIError("the agent did not answer (no speech recognised?)")
    if not collector.audio:
        last = collector.errors[-1] if collector.errors else {}
        why = f": {last.get('code')}: {last.get('message')}" if last else ""
        raise CLIError(f"the agent answered without audio{why}")
    audio = np.concatenate(collector.audio)
    write_wav(args.output, audio, rate)
    summary = {
        "output": args.output,
        "sample_rate": rate,
        "duration_s": round(len(audio) / rate, 3),
        "turns": len(collector.dones),
        "transcripts": collector.finals,
    }
    if args.json:
        emit_json({"frame": "summary", "data": summary})
    elif not args.quiet:
        print(f"wrote {args.output}: {summary['duration_s']} s at {rate} Hz, {len(collector.dones)} turn(s)",
              file=sys.stderr)  # fmt: skip
    return 0


async def send_file_to_agent(agent: AgentStream, samples: np.ndarray, args, progress: Progress, sent_all) -> None:
    await send_pcm(agent.send_audio, samples, args, progress)
    await agent.end_audio()  # the user's turn is over: no need to wait for end-of-turn detection
    sent_all.set()


NOTHING_HEARD_WAIT_S = 5.0


async def receive_agent_turns(agent: AgentStream, collector: AgentTurnCollector, sent_all, settle: float) -> None:
    """Until the whole file was sent and every turn it started was answered or found empty, then
    `settle` quiet seconds (audio_end may start one more); if nothing at all was heard by then,
    a longer quiet wait for a slow ASR. Or until the server closes."""
    while True:
        wait = None
        if sent_all.is_set() and not collector.turn_open:
            heard = collector.dones or collector.empty_turns
            wait = settle if heard else max(settle, NOTHING_HEARD_WAIT_S)
        try:
            frame = await (asyncio.wait_for(agent.recv(), wait) if wait else agent.recv())
        except asyncio.TimeoutError:
            return
        except StreamClosed as exc:
            if collector.dones:
                return
            raise CLIError(f"the agent closed the stream ({exc.code} {exc.reason})".strip()) from None
        collector.handle(frame)


# ------------------------------------------------------------------ argument parsing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice",
        description="Command line for the voice stack (ASR, TTS, agent).",
        epilog="examples:\n" + __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--api-key", default=os.environ.get("VOICE_API_KEY"), help="API key (env VOICE_API_KEY)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, service: str) -> None:
        env, default = DEFAULT_URLS[service]
        url = os.environ.get(env, default)
        p.add_argument("--url", default=url, help=f"service URL (env {env}, default {default})")
        p.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (env VOICE_API_KEY)")
        p.add_argument("--json", action="store_true", help="machine-readable output: one JSON object per line")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress or partials on stderr")

    p = sub.add_parser("transcribe", help="transcribe an audio file (streamed, or --rest)")
    common(p, "asr")
    p.add_argument("file", help="any audio file PyAV can decode (wav, mp3, flac, ogg, …)")
    p.add_argument("--fast", action="store_true", help="send as fast as possible instead of real-time pace")
    p.add_argument("--rest", action="store_true", help="use POST /v1/audio/transcriptions instead of the stream")
    p.add_argument(
        "--format", default="json", choices=("json", "text", "verbose_json", "srt", "vtt"), help="--rest output"
    )
    p.add_argument("--language", default=None, help="language code, e.g. en (default: detect)")
    p.add_argument("--no-partials", action="store_true", help="ask the server for finals only")
    p.add_argument("--turn-detection", choices=asr.TURN_MODES, default=None, help="end-of-turn mode (server default)")
    p.add_argument("--chunk-ms", type=positive_int, default=40, help="audio per WebSocket frame (default 40)")
    p.set_defaults(run=cmd_transcribe)

    p = sub.add_parser("speak", help="synthesize text to a WAV file")
    common(p, "tts")
    p.add_argument("text")
    p.add_argument("-o", "--output", required=True, help="WAV file to write")
    p.add_argument("--voice", default=None, help="voice id (default: the server's)")
    p.add_argument("--sample-rate", type=positive_int, default=None, help="output rate (default: the server's)")
    p.add_argument("--rest", action="store_true", help="use POST /v1/audio/speech instead of the stream")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="give up when nothing arrives for this many seconds (default 60)"
    )
    p.set_defaults(run=cmd_speak)

    p = sub.add_parser("register-voice", help="register a voice from reference audio")
    common(p, "tts")
    p.add_argument("id", help="voice id to register")
    p.add_argument("file", help="reference audio (a few seconds of clean speech)")
    p.add_argument("--name", default=None, help="display name")
    p.set_defaults(run=cmd_register_voice)

    p = sub.add_parser("agent", help="talk to the voice agent with a WAV file, save its spoken reply")
    common(p, "agent")
    p.add_argument("file", help="the user's speech (any audio file PyAV can decode)")
    p.add_argument("-o", "--output", required=True, help="WAV file for the agent's reply audio")
    p.add_argument("--mode", default="agent", choices=("agent", "direct"), help="agent (LLM) or direct (echo)")
    p.add_argument("--voice", default=None, help="TTS voice id for the reply")
    p.add_argument("--fast", action="store_true", help="send as fast as possible instead of real-time pace")
    p.add_argument("--chunk-ms", type=positive_int, default=20, help="audio per frame (default 20)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    p.add_argument("--settle", type=float, default=1.5, help="quiet seconds after the last answer before exiting")
    p.set_defaults(run=cmd_agent)
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = asyncio.run(args.run(args))
    except CLIError as exc:
        print(f"voice {args.command}: {exc}", file=sys.stderr)
        status = exc.status
    except ServerError as exc:
        print(f"voice {args.command}: server error {exc}", file=sys.stderr)
        status = 1
    except StreamClosed as exc:
        print(f"voice {args.command}: {describe_closed(exc, args.url)}", file=sys.stderr)
        status = 1
    except ProtocolError as exc:  # a request the library refuses before sending (bad --language, …)
        print(f"voice {args.command}: {exc.code}: {exc.message}", file=sys.stderr)
        status = 2
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        print(f"voice {args.command}: cannot reach {args.url}: {type(exc).__name__} {exc}".rstrip(), file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # httpx errors and the like: one line, not a traceback
        if type(exc).__module__.startswith("httpx"):
            print(f"voice {args.command}: {describe_http_error(exc)}", file=sys.stderr)
            status = 1
        else:
            raise
    return status


def describe_closed(exc: StreamClosed, url: str) -> str:
    if exc.code == 1008:
        return f"{url} refused the API key (close 1008 {exc.reason}); pass --api-key or set VOICE_API_KEY".strip()
    if exc.code == 1013:
        return f"{url} is busy (close 1013 {exc.reason}); try again later"
    return f"{url} closed the connection: {exc}"


def describe_http_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if response is None:
        return f"{type(exc).__name__}: {exc}"
    try:
        err = response.json().get("error", {})
        return f"HTTP {response.status_code} {err.get('code') or err.get('type', '')}: {err.get('message', '')}"
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}: {response.text[:200]}"


if __name__ == "__main__":
    sys.exit(main())

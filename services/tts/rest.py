"""REST: POST /v1/audio/speech (OpenAI-compatible, streamed as it is made) and the voice API."""

from __future__ import annotations

import contextlib
import logging

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from services.common import logs
from services.common.audio import StreamResampler
from services.common.http_body import BodyTooLarge, read_capped
from services.common.limits import CapacityError, SessionLimiter, busy_response, error_response
from services.common.protocol.base import ProtocolError
from services.common.text import split_text
from services.common.validate import InputError, parse_json

from . import metrics, params
from .encoders import FORMATS, StreamEncoder
from .engines.base import CancelToken, SynthesisParams
from .runtime import TTSRuntime
from .speak import RequestStats, iterate, speak
from .voices.backends import StoreUnavailable
from .voices.store import VoiceError

log = logging.getLogger("voice.tts.rest")

# OpenAI's voice names: accepted and spoken with the engine's default voice, so clients written
# for OpenAI work unchanged
OPENAI_VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
REST_SAMPLE_RATE = 24000  # OpenAI's speech output rate (its `pcm` is 24 kHz s16le); valid for opus too
SPEECH_FIELDS = {
    "model",
    "input",
    "voice",
    "response_format",
    "speed",
    "instructions",
    "stream_format",
    "exaggeration",
    "cfg_weight",
    "temperature",
    "seed",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    metrics.ERRORS.labels(code=code).inc()
    return error_response(status, code, message)


def _not_ready(rt: TTSRuntime) -> JSONResponse | None:
    if rt.loaded:
        return None
    return _error(503, "not_ready", rt.load_error or "the model is still loading")


class CancellingStream(StreamingResponse):
    """A streamed speech body whose synthesis stops the moment the response ends, however it ends
    (the client disconnected, a send failed, the server is shutting down): the cancel token is set
    at once, and the body generator is closed here, not whenever the garbage collector finalises
    it, so its scheduler slot and session slot are free when this returns."""

    def __init__(self, content, cancel: CancelToken, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self._cancel = cancel

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._cancel.cancel()
            with anyio.CancelScope(shield=True):  # finish the cleanup even inside a cancelled scope
                await self.body_iterator.aclose()


def make_routes(rt: TTSRuntime, limiter: SessionLimiter) -> list[Route]:
    async def speech(request: Request) -> Response:
        if (refused := _not_ready(rt)) is not None:
            return refused
        if limiter.full:  # a speech request counts as a session while its body streams
            metrics.SESSIONS_REJECTED.inc()
            return busy_response(f"server at capacity ({limiter.limit} concurrent sessions)")
        body_cap = rt.config.max_text_chars * 6 + 64 * 1024  # the text in \u escapes, plus the other fields
        try:
            body = parse_json(await read_capped(request, body_cap), max_bytes=body_cap)
        except BodyTooLarge:
            return _error(413, "too_large", f"request body over {body_cap} bytes")
        except ClientDisconnect:
            return _error(400, "bad_request", "client disconnected during the request body")
        except InputError as exc:
            return _error(exc.status, exc.code, exc.message)
        if not isinstance(body, dict):
            return _error(400, "bad_json", "the body must be a JSON object")
        try:
            unknown = sorted(set(body) - SPEECH_FIELDS)
            if unknown:
                raise ProtocolError("unknown_field", f"unknown field(s) {', '.join(unknown)}")
            text = params.text(body.get("input"), rt.config.max_text_chars, field="input")
            if body.get("stream_format") not in (None, "audio"):
                raise ProtocolError("bad_stream_format", "only stream_format 'audio' is supported")
            fmt = body.get("response_format") or "mp3"
            if fmt not in FORMATS:
                raise ProtocolError("bad_response_format", f"response_format must be one of {', '.join(FORMATS)}")
            synth_params = SynthesisParams(
                exaggeration=params.number(body, "exaggeration", 0.5),
                cfg_weight=params.number(body, "cfg_weight", 0.5),
                temperature=params.number(body, "temperature", 0.8),
                seed=params.seed(body, None),
                speed=params.number(body, "speed", 1.0),
            )
            voice = body.get("voice")
            if voice is not None and not isinstance(voice, str):
                raise ProtocolError("bad_parameter", "voice must be a string")
            voice_id = None if voice in (None, "") or voice in OPENAI_VOICES else voice
            conditionals = await rt.store.resolve(voice_id)
        except ProtocolError as exc:
            return _error(400, exc.code, exc.message)
        except VoiceError as exc:
            return _error(exc.status, exc.code, exc.message)
        except StoreUnavailable as exc:
            return _error(503, exc.code, str(exc))

        rate = REST_SAMPLE_RATE
        encoder = StreamEncoder(fmt, rate)
        resampler = StreamResampler(rt.engine.sample_rate, rate)
        pieces = split_text(text, rt.config.piece_max_chars)
        cancel = CancelToken()

        async def body_stream():
            stats = RequestStats()
            ok = False
            try:
                async with limiter.slot(), contextlib.aclosing(synthesize(stats)) as parts:
                    async for part in parts:
                        yield part
                ok = True
            except CapacityError:
                return  # filled up between the check and the first byte: the body ends empty
            finally:
                cancel.cancel()  # client gone mid-stream: stop the engine
                metrics.REQUESTS.labels(outcome="complete" if ok else "cancelled").inc()

        async def synthesize(stats: RequestStats):
            yield encoder.header()
            async with contextlib.aclosing(
                speak(rt.synth, iterate(pieces), conditionals, synth_params, cancel, stats)
            ) as chunks:
                async for audio in chunks:
                    data = encoder.encode(resampler.process(audio))
                    if data:
                        yield data
            yield encoder.encode(resampler.flush()) + encoder.finish()

        engine_ok, why = rt.synth.guard.ready()
        if not engine_ok:  # circuit breaker open: a fast 503, not a 200 whose body fails
            return _error(503, "engine_unavailable", why)
        headers = {"X-Sample-Rate": str(rate), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return CancellingStream(body_stream(), cancel, media_type=encoder.media_type, headers=headers)

    async def list_voices(request: Request) -> Response:
        if (refused := _not_ready(rt)) is not None:
            return refused
        try:
            voices = await rt.store.list()
        except StoreUnavailable as exc:
            return _error(503, exc.code, str(exc))
        return JSONResponse({"object": "list", "data": voices})

    async def create_voice(request: Request) -> Response:
        if (refused := _not_ready(rt)) is not None:
            return refused
        cap = rt.config.max_upload_bytes
        try:  # capped before multipart parsing, declared length or not (chunked uploads too)
            request._body = await read_capped(request, cap + 64 * 1024)
        except BodyTooLarge:
            return _error(413, "upload_too_large", f"upload larger than {cap} bytes (TTS_MAX_UPLOAD_BYTES)")
        except ClientDisconnect:
            return _error(400, "bad_request", "client disconnected during upload")
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=64 * 1024)
        except Exception:
            return _error(400, "bad_form", "expected multipart/form-data with a 'file' field")
        upload = form.get("file") or form.get("reference_audio")
        if upload is None or isinstance(upload, str):
            return _error(400, "missing_file", "multipart field 'file' (the reference audio) is required")
        data = await upload.read(rt.config.max_upload_bytes + 1)
        if len(data) > rt.config.max_upload_bytes:
            return _error(413, "upload_too_large", f"upload larger than {rt.config.max_upload_bytes} bytes")
        voice_id = form.get("id") or form.get("voice_id")
        name = form.get("name")
        try:
            meta = await rt.store.register(
                voice_id if isinstance(voice_id, str) else None, name if isinstance(name, str) else None, data
            )
        except VoiceError as exc:
            return _error(exc.status, exc.code, exc.message)
        except StoreUnavailable as exc:
            return _error(503, exc.code, f"voice registration failed: {exc}")
        logs.event(log, "voice registered", voice_id=meta.id)
        return JSONResponse({**meta.to_dict(), "builtin": False}, status_code=201)

    async def get_voice(request: Request) -> Response:
        if (refused := _not_ready(rt)) is not None:
            return refused
        try:
            return JSONResponse(await rt.store.get(request.path_params["voice_id"]))
        except VoiceError as exc:
            return _error(exc.status, exc.code, exc.message)
        except StoreUnavailable as exc:
            return _error(503, exc.code, str(exc))

    async def delete_voice(request: Request) -> Response:
        if (refused := _not_ready(rt)) is not None:
            return refused
        voice_id = request.path_params["voice_id"]
        try:
            await rt.store.delete(voice_id)
        except VoiceError as exc:
            return _error(exc.status, exc.code, exc.message)
        except StoreUnavailable as exc:
            return _error(503, exc.code, str(exc))
        return JSONResponse({"id": voice_id, "deleted": True})

    return [
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/voices", list_voices, methods=["GET"]),
        Route("/v1/voices", create_voice, methods=["POST"]),
        Route("/v1/voices/{voice_id}", get_voice, methods=["GET"]),
        Route("/v1/voices/{voice_id}", delete_voice, methods=["DELETE"]),
        Route("/v1/audio/voices", list_voices, methods=["GET"]),
    ]

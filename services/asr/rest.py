"""`POST /v1/audio/transcriptions`: OpenAI-compatible multipart upload → transcript.

The body is read with a hard cap before multipart parsing, so an oversize upload costs at most
ASR_MAX_UPLOAD_BYTES of memory and gets 413 whether or not it declared a Content-Length.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from services.common import logs, validate
from services.common.audio import AudioFormatError, AudioTooLong, decode_file
from services.common.errors import CodedError
from services.common.http_body import BodyTooLarge, read_capped
from services.common.limits import CapacityError, SessionLimiter, busy_response, error_response
from services.common.validate import InputError

from . import formats, metrics
from .config import ASRConfig
from .engines import Engines, Kind
from .transcriber import SAMPLE_RATE
from .transcriber import Request as TranscribeRequest

log = logging.getLogger("voice.asr.rest")


def _error(status: int, code: str, message: str) -> Response:
    metrics.errors.labels(code).inc()
    return error_response(status, code, message)


def _granularities(values: list[str]) -> tuple[str, ...]:
    out = []
    for value in values:
        if value not in formats.GRANULARITIES:
            raise ValueError(f"timestamp_granularities[] must be word or segment, got {value!r}")
        out.append(value)
    return tuple(out)


def make_endpoint(config: ASRConfig, engines: Engines, limiter: SessionLimiter):
    cap = config.max_upload_bytes

    async def transcriptions(request: Request) -> Response:
        if not engines.loaded:
            return busy_response("models are still loading", retry_after_s=5)
        try:
            async with limiter.slot():
                return await _transcribe(request)
        except CapacityError as exc:
            return busy_response(str(exc))

    async def _transcribe(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return _error(400, "bad_request", "send multipart/form-data with a 'file' field (OpenAI's format)")
        try:
            body = await read_capped(request, cap + 64 * 1024)  # room for the other form fields
        except BodyTooLarge:
            return _error(413, "upload_too_large", f"upload over the limit of {cap} bytes (ASR_MAX_UPLOAD_BYTES)")
        except ClientDisconnect:
            return _error(400, "bad_request", "client disconnected during upload")
        request._body = body  # starlette parses the form from the cached body
        try:
            form = await request.form(max_files=1, max_fields=50, max_part_size=64 * 1024)
        except Exception as exc:
            return _error(400, "bad_request", f"could not parse the multipart form: {type(exc).__name__}")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return _error(400, "missing_file", "the form needs a 'file' field holding the audio")
        data = await upload.read()
        if len(data) > cap:
            return _error(413, "upload_too_large", f"upload over the limit of {cap} bytes (ASR_MAX_UPLOAD_BYTES)")
        if not data:
            return _error(400, "bad_audio", "the uploaded file is empty")

        response_format = str(form.get("response_format") or "json")
        if response_format not in formats.RESPONSE_FORMATS:
            return _error(
                400, "bad_response_format", f"response_format must be one of {', '.join(formats.RESPONSE_FORMATS)}"
            )
        try:
            granularities = _granularities([str(v) for v in form.getlist("timestamp_granularities[]")])
        except ValueError as exc:
            return _error(400, "bad_timestamp_granularities", str(exc))
        temperatures = None
        if form.get("temperature") not in (None, ""):
            try:
                temperature = float(str(form.get("temperature")))
            except ValueError:
                return _error(400, "bad_temperature", "temperature must be a number from 0 to 1")
            if not 0.0 <= temperature <= 1.0:
                return _error(400, "bad_temperature", "temperature must be a number from 0 to 1")
            temperatures = (temperature,)
        if str(form.get("stream") or "false").lower() == "true":
            return _error(400, "unsupported", "stream=true is not supported here; use the /v1/asr/stream WebSocket")
        try:
            language = validate.language(form.get("language"))
        except InputError as exc:
            return _error(exc.status, exc.code, exc.message)
        prompt = str(form.get("prompt") or "") or None

        try:  # in a worker, bounded while it decodes: /health keeps answering, memory stays capped
            audio = await asyncio.to_thread(decode_file, data, SAMPLE_RATE, config.max_audio_s)
        except AudioTooLong as exc:
            return _error(413, exc.code, f"{exc.message} (ASR_MAX_AUDIO_SECS)")
        except AudioFormatError as exc:
            return _error(400, exc.code, f"{exc.message} (send a file PyAV can decode: wav, mp3, ogg, flac, m4a, …)")
        metrics.audio_seconds.labels("file").inc(len(audio) / SAMPLE_RATE)

        started = time.perf_counter()
        try:
            transcript = await engines.transcriber.transcribe(
                TranscribeRequest(
                    audio,
                    Kind.FILE,
                    language=language,
                    word_timestamps="word" in granularities,
                    prompt=prompt,
                    temperatures=temperatures,
                )
            )
        except ValueError as exc:  # faster-whisper's answer to e.g. an unknown language code
            return _error(400, "bad_request", str(exc))
        except CodedError as exc:  # inference_timeout, engine_unavailable, gpu_out_of_memory
            return _error(exc.status, exc.code, exc.message)
        except Exception as exc:
            log.exception("file transcription failed")
            return _error(500, "transcription_failed", f"transcription failed: {type(exc).__name__}")
        logs.event(
            log,
            "file transcribed",
            audio_s=round(transcript.duration, 3),
            seconds=round(time.perf_counter() - started, 3),
            text=logs.content(transcript.text),
        )
        if response_format == "json":
            return JSONResponse(formats.as_json(transcript))
        if response_format == "verbose_json":
            return JSONResponse(formats.as_verbose_json(transcript, granularities))
        if response_format == "srt":
            return PlainTextResponse(formats.as_srt(transcript))
        if response_format == "vtt":
            return PlainTextResponse(formats.as_vtt(transcript), media_type="text/vtt")
        return PlainTextResponse(formats.as_text(transcript))

    return transcriptions

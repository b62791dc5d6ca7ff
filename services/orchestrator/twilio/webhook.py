"""`POST /twilio/voice`: the call webhook. Answers TwiML that connects the call to our media stream:

    <Response><Connect><Stream url="wss://PUBLIC_HOST/twilio/media">
        <Parameter name="mode" value="direct"/> ...
    </Stream></Connect></Response>

Query arguments of the webhook URL configured in Twilio (`/twilio/voice?mode=direct&voice=alice`)
become `<Parameter>`s, which Twilio hands back in the stream's `start.customParameters`: that is
how a phone number picks its session options, since Twilio allows no query string on the stream URL.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from twilio.twiml.voice_response import Connect, VoiceResponse

from services.common import logs
from services.common.limits import error_response

from .. import metrics
from .config import TwilioConfig
from .media import SESSION_FIELDS
from .signature import SignatureCheck, stream_url

log = logging.getLogger("voice.orchestrator.twilio")
MAX_PARAMETER_CHARS = 128


def stream_twiml(url: str, parameters: dict[str, str]) -> str:
    """TwiML through the twilio SDK's builder, so escaping and element names are Twilio's own."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


class VoiceWebhook:
    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self.check = SignatureCheck(config.auth_token) if config.auth_token else None

    async def handle(self, request: Request) -> Response:
        """POST (form fields in the body, signed with the URL) or GET (fields in the query, which
        is part of the signed URL) — the two webhook methods Twilio offers."""
        try:
            form = await request.form() if request.method == "POST" else None
        except Exception:  # a malformed body; multipart's parser raises several types
            return error_response(400, "bad_form", "expected an application/x-www-form-urlencoded body")
        fields = form if form is not None else request.query_params
        if self.check is not None:
            if not self.check.valid(request.scope, self.config.public_url, form):
                metrics.TWILIO_REFUSED.labels("signature").inc()
                logs.event(log, "twilio webhook refused: bad signature", level=logging.WARNING)
                return error_response(403, "bad_signature", "invalid or missing X-Twilio-Signature")
        elif request.app.state.runtime.config.common.api_keys:
            metrics.TWILIO_REFUSED.labels("not_configured").inc()
            return error_response(
                403, "twilio_not_configured", "set TWILIO_AUTH_TOKEN: with API_KEYS set, Twilio requests are signed"
            )
        parameters = {
            name: value[:MAX_PARAMETER_CHARS] for name in SESSION_FIELDS if (value := request.query_params.get(name))
        }
        call_sid = fields.get("CallSid")
        if isinstance(call_sid, str) and call_sid:
            parameters["callSid"] = call_sid
        url = stream_url(request.scope, self.config.public_url)
        logs.event(log, "twilio call webhook", call_sid=call_sid, stream_url=url)
        return Response(stream_twiml(url, parameters), media_type="application/xml")

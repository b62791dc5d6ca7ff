"""Settings of the Twilio bridge (read with the orchestrator's; listed in the README's table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import EnvReader

MODES = ("agent", "direct")


@dataclass(frozen=True)
class TwilioConfig:
    auth_token: str | None
    public_url: str | None
    mode: str
    voice: str | None
    dtmf_gap_s: float

    @classmethod
    def from_env(cls, env: EnvReader) -> TwilioConfig:
        public_url = env.str(
            "PUBLIC_URL",
            None,
            "public base URL Twilio reaches (https://host); empty = from X-Forwarded-Proto/Host or the request",
        )
        if public_url is not None:
            public_url = public_url.rstrip("/")
            if not public_url.startswith(("https://", "http://")) or "?" in public_url:
                env.fail("PUBLIC_URL", f"{public_url!r} must be an http(s):// base URL without a query")
                public_url = None
        return cls(
            auth_token=env.str(
                "TWILIO_AUTH_TOKEN", None, "Twilio auth token: X-Twilio-Signature is checked on /twilio/* when set"
            ),
            public_url=public_url,
            mode=env.str("TWILIO_MODE", "agent", "default mode of a phone session (agent or direct)", choices=MODES),
            voice=env.str("TWILIO_VOICE", None, "TTS voice for calls; empty = DEFAULT_VOICE"),
            dtmf_gap_s=env.float(
                "TWILIO_DTMF_GAP_S", 1.5, "keypad digits are sent as one text turn after this pause (or '#')", min=0.1
            ),
        )


def load(environ: Mapping[str, str] | None = None) -> TwilioConfig:
    env = EnvReader(os.environ if environ is None else environ)
    config = TwilioConfig.from_env(env)
    env.finish()
    return config

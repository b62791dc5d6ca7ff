"""OpenAI Realtime transcription sessions (`WS /v1/realtime?intent=transcription`) over the ASR core."""

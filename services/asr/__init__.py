"""ASR service: streaming transcription with Silero VAD + Smart Turn v3 turn taking (faster-whisper)."""

"""TTS service: streaming text-to-speech (Chatterbox or espeak-ng) with a shared voice store."""

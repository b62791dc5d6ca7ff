"""Voice agent orchestrator: ASR → Claude → TTS over pluggable transports (see session.py)."""

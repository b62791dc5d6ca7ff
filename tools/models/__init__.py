"""`make models`: fills models/ with what the services load by default and the tests use.

- smart-turn-v3.2-cpu.onnx: real weights, taken from the pinned pipecat-ai wheel on PyPI.
- whisper-tiny-random/: a random-weight Whisper in CTranslate2 format with a valid tokenizer.json.
- chatterbox-tiny-random/: a random-weight Chatterbox checkpoint built from chatterbox-tts classes.

Each step is idempotent (it checks its outputs) so `make test` can call it every time.
"""

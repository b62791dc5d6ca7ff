"""Wire types of the three streaming protocols, shared by the services and the client library.

Plain dataclasses, one per message, in the style of Wyoming's events: `to_dict()` for the wire,
`parse_*` for the way back. docs/asr.md, docs/tts.md and docs/orchestrator.md describe them.
"""

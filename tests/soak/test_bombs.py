"""Bombs and traversal (bench/soak/bombs.py), issue 9 items 1-2: a 2 h FLAC of silence to the ASR
upload and the TTS voice registration, refused with 413 while /health keeps answering; traversal
ids on every route and message that takes a voice id: no bypass, nothing changed outside the store."""

from __future__ import annotations

from bench.soak import bombs


async def test_bombs_and_traversal(soak_stack):
    result = await bombs.run(soak_stack, hours=2.0)
    for b in result["bombs"]:
        assert b["answer"].startswith("413"), b
        assert b["alive"] and b["health_failures"] == 0, b
    t = result["traversal"]
    assert t["probes"] >= 50
    assert not t["bypasses"] and not t["outside_store_changed"] and t["store_parent_exists"], t

"""Short fuzz (bench/soak/fuzz.py): 30 malformed messages per WebSocket endpoint and REST route.
Targets: no process dies, no unexpected close, every malformed input gets a coded error."""

from __future__ import annotations

from bench.soak import fuzz

N = 30


async def test_fuzz_every_endpoint(soak_stack):
    results = await fuzz.run(soak_stack, N, seed=1)
    assert set(results) >= {"WS /v1/asr/stream", "WS /v1/tts/stream", "WS /v1/agent/stream", "WS /twilio/media"}
    for name, tally in results.items():
        assert tally.sent >= N, name
        assert tally.deaths == 0, f"{name}: a service died or stopped answering /health"
        assert not tally.unexpected_closes, f"{name}: {tally.unexpected_closes}"
        assert not tally.uncoded, f"{name}: answers without code + message: {tally.uncoded}"
        assert tally.silent == 0, f"{name}: malformed input with no error: {tally.silent_cases}"
        assert tally.server_errors == 0, f"{name}: 5xx / internal answers {tally.codes}"
    # the attribution is real: the JSON sockets answered with several distinct codes
    assert len(results["WS /v1/tts/stream"].codes) >= 3 and len(results["WS /v1/asr/stream"].codes) >= 3

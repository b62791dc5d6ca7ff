"""The limit mechanisms themselves, driven with an injected clock (deterministic, no sleeps):
the token bucket, the circuit breaker's state machine and GPU out-of-memory recognition, on the
real exception types (torch.cuda.OutOfMemoryError exists in CPU torch) and CTranslate2's text."""

from __future__ import annotations

import asyncio

import pytest

from services.common.breaker import CLOSED, HALF_OPEN, OPEN, EngineGuard, is_gpu_oom
from services.common.budget import Budget, BufferFull
from services.common.errors import CodedError
from services.common.ratelimit import RateLimiter, refusal_reason, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_bursts_then_refills():
    clock = Clock()
    limiter = RateLimiter(per_min=60, burst=3, clock=clock)  # one token a second, three at most
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0.9 < wait <= 1.0 and retry_after(wait) == 1
    assert limiter.take("b") == 0.0  # buckets are per client
    clock.now += 1.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 3600
    assert [limiter.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refills to the burst, no more
    assert "retry in 1 s" in refusal_reason(0.2)


def test_rate_limiter_off_and_bounded():
    assert not RateLimiter(0).enabled and RateLimiter(0).take("x") == 0.0
    limiter = RateLimiter(per_min=1, burst=1, max_clients=10)
    for i in range(100):
        limiter.take(f"addr:{i}")
    assert len(limiter._buckets) == 10  # a scan from many addresses cannot grow memory


def test_client_key_only_when_valid():
    limiter = RateLimiter(per_min=10, keys=("k1",))
    scope = {"type": "http", "headers": [(b"authorization", b"Bearer k1")], "client": ("10.0.0.1", 5)}
    assert limiter.client(scope) == "key:k1"
    forged = {**scope, "headers": [(b"authorization", b"Bearer made-up")]}
    assert limiter.client(forged) == "addr:10.0.0.1"  # a fresh fake key per request buys nothing


def test_breaker_opens_fails_fast_probes_and_recovers():
    clock = Clock()
    guard = EngineGuard("TEST", timeout_s=0, failures=3, cooldown_s=10, clock=clock)
    breaker = guard.breaker
    for _ in range(2):
        guard.check()
        guard.failed(RuntimeError("engine broke"))
    assert breaker.state == CLOSED and guard.ready()[0]
    guard.check()
    guard.failed(RuntimeError("engine broke"))
    assert breaker.state == OPEN
    with pytest.raises(CodedError) as info:
        guard.check()
    assert info.value.code == "engine_unavailable" and info.value.status == 503
    ok, reason = guard.ready()
    assert not ok and "failed 3 times" in reason
    clock.now += 10
    assert breaker.state == HALF_OPEN and guard.ready()[0]
    guard.check()  # the one probe
    with pytest.raises(CodedError):
        guard.check()  # a second caller while the probe runs
    guard.failed(RuntimeError("still broken"))
    assert breaker.state == OPEN  # a failed probe reopens at once
    clock.now += 10
    guard.check()
    breaker.success()
    assert breaker.state == CLOSED and breaker.consecutive == 0
    guard.check()


async def test_guard_call_timeout_counts_and_success_resets():
    guard = EngineGuard("TEST", timeout_s=0.01, failures=2, cooldown_s=60)
    with pytest.raises(CodedError) as info:
        await guard.call(asyncio.sleep(5))
    assert info.value.code == "inference_timeout"
    assert guard.breaker.consecutive == 1
    assert await guard.call(asyncio.sleep(0, result=7)) == 7
    assert guard.breaker.consecutive == 0
    for _ in range(2):
        with pytest.raises(CodedError):
            await guard.call(asyncio.sleep(5))
    with pytest.raises(CodedError) as info:
        await guard.call(asyncio.sleep(0))
    assert info.value.code == "engine_unavailable"


def test_gpu_oom_is_a_capacity_error_and_not_counted():
    torch = pytest.importorskip("torch")
    guard = EngineGuard("TEST", failures=1)
    real = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_gpu_oom(real)
    mapped = guard.failed(real)
    assert isinstance(mapped, CodedError) and mapped.code == "gpu_out_of_memory" and mapped.status == 503
    # CTranslate2 reports CUDA OOM as a RuntimeError with CUDA's text
    ct2 = RuntimeError("CUDA failed with error out of memory")
    assert is_gpu_oom(ct2) and guard.failed(ct2).code == "gpu_out_of_memory"
    assert guard.breaker.state == CLOSED  # capacity, not a broken engine
    other = RuntimeError("shape mismatch")
    assert not is_gpu_oom(other) and not is_gpu_oom(MemoryError("x")) and guard.failed(other) is other
    assert guard.breaker.state == OPEN


def test_client_errors_do_not_open_the_breaker():
    guard = EngineGuard("TEST", failures=1)
    bad = CodedError("bad_voice", "no such voice")
    assert guard.failed(bad) is bad and guard.breaker.state == CLOSED


def test_budget():
    budget = Budget(max_audio_s=10, max_text_chars=100)
    budget.text(60, 40)
    with pytest.raises(BufferFull) as info:
        budget.text(60, 41)
    assert info.value.code == "buffer_full" and "MAX_BUFFERED_TEXT_CHARS" in info.value.message
    budget.audio(9.5, 0.5)
    with pytest.raises(BufferFull):
        budget.audio(9.5, 0.6)
    assert budget.turn_cap(30.0, 0.3) == pytest.approx(9.7) and budget.turn_cap(5.0, 0.3) == 5.0

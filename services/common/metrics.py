"""Prometheus helpers: one naming scheme (voice_<service>_..., base units) and one endpoint."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

# latency buckets from 5 ms to 30 s: covers a VAD decision and a slow CPU synthesis alike
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)


def _name(service: str, name: str) -> str:
    return f"voice_{service}_{name}"


def histogram(service: str, name: str, doc: str, buckets=LATENCY_BUCKETS, labels=()) -> Histogram:
    return Histogram(_name(service, name), doc, labelnames=labels, buckets=buckets)


def counter(service: str, name: str, doc: str, labels=()) -> Counter:
    return Counter(_name(service, name), doc, labelnames=labels)


def gauge(service: str, name: str, doc: str, labels=()) -> Gauge:
    return Gauge(_name(service, name), doc, labelnames=labels)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

# Test-only stand-in for the public redis and nginx images (Docker Hub is out of reach on the test
# machines): the same Debian base as the service images, with Debian's redis-server and nginx.
ARG BASE=voicestack-test-base:bookworm
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server nginx-light wget \
 && rm -rf /var/lib/apt/lists/*

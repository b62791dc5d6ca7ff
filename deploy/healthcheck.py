"""Container health check: exit 0 when GET http://127.0.0.1:PORT/ready answers 200, else 1.

/ready (not /health) is what a load balancer needs: it is 200 only once the models are loaded and
while the replica has capacity. When API_KEYS is set, /ready needs a key too, so the check sends
the first one, read from the container's own environment. Standard library only: the images carry
no curl.

    python deploy/healthcheck.py 8001
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(port: int, path: str = "/ready", timeout_s: float = 3.0) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    keys = [k.strip() for k in os.environ.get("API_KEYS", "").split(",") if k.strip()]
    if keys:
        request.add_header("Authorization", f"Bearer {keys[0]}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or not argv[0].isdigit():
        print("usage: python deploy/healthcheck.py PORT [PATH]", file=sys.stderr)
        return 2
    return 0 if check(int(argv[0]), *(argv[1:] or [])) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

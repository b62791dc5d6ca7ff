"""The client address behind proxies (services/common/client_addr.py, TRUSTED_PROXIES).

The rule on its own first (no sockets: it is a function of the peer and two headers), then on a
real TTS process whose rate limit keys buckets by address: a spoofed X-Forwarded-For from an
untrusted peer changes nothing, from a trusted peer two forwarded clients get two buckets, and
malformed headers neither crash nor pick a bucket of the sender's choosing. The same through the
real nginx is in tests/deploy/test_nginx.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from deploy.nginx.render import Settings
from services.common.client_addr import MAX_HEADER_CHARS, TrustedProxies, parse_address
from services.common.config import CommonConfig, ConfigError, EnvReader
from tests.deploy.gateway import Gateway
from tests.helpers.procs import ServiceProcess, free_port

LOOPBACK = TrustedProxies(("127.0.0.1", "::1"))


def forwarded(value: str, name: bytes = b"x-forwarded-for") -> list[tuple[bytes, bytes]]:
    return [(name, value.encode("latin-1"))]


# ------------------------------------------------------------------ the rule
def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert LOOPBACK.client("203.0.113.9", forwarded("198.51.100.1")) == "203.0.113.9"
    assert LOOPBACK.client("203.0.113.9", forwarded("198.51.100.1", b"x-real-ip")) == "203.0.113.9"
    never = TrustedProxies(("none",))
    assert never.client("127.0.0.1", forwarded("198.51.100.1")) == "127.0.0.1"


def test_a_trusted_peer_forwards_the_right_most_untrusted_address():
    proxies = TrustedProxies(("127.0.0.1", "10.0.0.0/8"))
    # the client wrote "1.1.1.1"; nginx appended the address it saw, 198.51.100.7
    assert proxies.client("127.0.0.1", forwarded("1.1.1.1, 198.51.100.7")) == "198.51.100.7"
    # a chain of trusted proxies is skipped from the right
    assert proxies.client("127.0.0.1", forwarded("1.1.1.1, 198.51.100.7, 10.1.2.3")) == "198.51.100.7"
    assert proxies.client("127.0.0.1", forwarded("10.9.9.9, 10.1.2.3")) == "10.9.9.9"  # all trusted: left-most
    # repeated headers are one list, in order
    headers = forwarded("1.1.1.1") + forwarded("198.51.100.8")
    assert proxies.client("127.0.0.1", headers) == "198.51.100.8"
    # no X-Forwarded-For: X-Real-IP; neither: the peer
    assert proxies.client("127.0.0.1", forwarded("198.51.100.9", b"x-real-ip")) == "198.51.100.9"
    assert proxies.client("127.0.0.1", []) == "127.0.0.1"


def test_addresses_are_canonical_so_one_client_has_one_bucket():
    assert parse_address("198.51.100.7:5555") == parse_address("198.51.100.7")
    assert str(parse_address("[2001:DB8::1]:443")) == "2001:db8::1"
    assert str(parse_address("::ffff:198.51.100.7")) == "198.51.100.7"
    assert LOOPBACK.client("::ffff:127.0.0.1", forwarded("2001:db8:0:0::1")) == "2001:db8::1"


@pytest.mark.parametrize(
    "value",
    [
        "not-an-address",
        "198.51.100.7, garbage",
        "",
        ",",
        "198.51.100.7:99999",
        "[2001:db8::1",
        "fe80::1%eth0",
        "198.51.100.7\x00",
        "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
        "198.51.100." + "7" * 2000,
        ", ".join(["198.51.100.1"] * 200),  # over MAX_HEADER_CHARS
    ],
)
def test_malformed_headers_fall_back_to_the_peer(value):
    assert LOOPBACK.client("127.0.0.1", forwarded(value)) == "127.0.0.1"
    assert LOOPBACK.client("127.0.0.1", forwarded(value, b"x-real-ip")) == "127.0.0.1"


def test_the_header_bound_is_checked_before_anything_is_parsed():
    chain = ", ".join(["198.51.100.1"] * 10)
    assert len(chain) < MAX_HEADER_CHARS and LOOPBACK.client("127.0.0.1", forwarded(chain)) == "198.51.100.1"
    assert LOOPBACK.client("127.0.0.1", forwarded(chain + " " * MAX_HEADER_CHARS)) == "127.0.0.1"


def test_trusted_proxies_setting_is_validated_at_start():
    assert CommonConfig.read(EnvReader(environ={}), "P", 1).trusted_proxies == ("127.0.0.1", "::1")
    env = EnvReader(environ={"TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"})
    assert CommonConfig.read(env, "P", 1).trusted_proxies == ("10.0.0.0/8", "192.0.2.1")
    env = EnvReader(environ={"TRUSTED_PROXIES": "10.0.0.0/8,nginx"})
    CommonConfig.read(env, "P", 1)
    with pytest.raises(ConfigError) as info:
        env.finish()
    assert "TRUSTED_PROXIES" in str(info.value) and "'nginx'" in str(info.value)


# ------------------------------------------------------------------ a real process
def tts(espeak_env: dict[str, str], trusted: str, label: str) -> ServiceProcess:
    env = {**espeak_env, "TRUSTED_PROXIES": trusted, "RATE_LIMIT_PER_MIN": "1", "RATE_LIMIT_BURST": "2"}
    return ServiceProcess("tts", env=env, label=label).start()


@pytest.fixture(scope="module")
def espeak_env(espeak):
    return {"TTS_ENGINE": "espeak"}


@pytest.fixture(scope="module")
def trusting(espeak_env):
    """Trusts loopback, as the default does: the test client plays nginx."""
    service = tts(espeak_env, "127.0.0.1", "limits-client-addr-trusting")
    yield service
    service.stop()


def spend(url: str, headers: dict[str, str], n: int) -> list[int]:
    return [httpx.get(url + "/v1/voices", headers=headers).status_code for _ in range(n)]


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(espeak_env):
    service = tts(espeak_env, "192.0.2.1", "limits-client-addr-untrusted")  # loopback is not trusted
    try:
        # three "different clients" by header are one client by address: the third is refused
        codes = [
            httpx.get(service.url + "/v1/voices", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
            for i in (1, 2, 3)
        ]
        assert codes == [200, 200, 429]
        assert spend(service.url, {"X-Real-IP": "198.51.100.50"}, 1) == [429]
    finally:
        service.stop()


def test_forwarded_clients_of_a_trusted_peer_get_separate_buckets(trusting):
    a, b = {"X-Forwarded-For": "1.1.1.1, 198.51.100.10"}, {"X-Forwarded-For": "198.51.100.11"}
    assert spend(trusting.url, a, 3) == [200, 200, 429]
    assert spend(trusting.url, b, 2) == [200, 200]  # not touched by a's requests
    # the client cannot move itself to a fresh bucket by writing to the left of what nginx appended
    assert spend(trusting.url, {"X-Forwarded-For": "203.0.113.1, 198.51.100.10"}, 1) == [429]
    assert spend(trusting.url, {"X-Real-IP": "198.51.100.12"}, 2) == [200, 200]


async def test_websocket_admission_uses_the_same_client_address(trusting):
    url = trusting.ws_url + "/v1/tts/stream"
    for _ in range(2):
        async with websockets.connect(url, additional_headers={"X-Forwarded-For": "198.51.100.20"}) as ws:
            assert '"ready"' in await asyncio.wait_for(ws.recv(), 30)
    async with websockets.connect(url, additional_headers={"X-Forwarded-For": "198.51.100.20"}) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 30)
    assert info.value.rcvd.code == 1008
    # the REST bucket of that address is the same one: spent
    assert spend(trusting.url, {"X-Forwarded-For": "198.51.100.20"}, 1) == [429]
    # another forwarded client opens its socket
    async with websockets.connect(url, additional_headers={"X-Forwarded-For": "198.51.100.21"}) as ws:
        assert '"ready"' in await asyncio.wait_for(ws.recv(), 30)
    # uvicorn's accept line names the forwarded client, not the proxy
    assert '198.51.100.21:0 - \\"WebSocket /v1/tts/stream\\" [accepted]' in trusting.log_path.read_text()


def test_malformed_forwarded_headers_from_a_trusted_peer_fall_back_to_the_peer(trusting):
    bad = [
        {"X-Forwarded-For": "garbage"},
        {"X-Forwarded-For": "198.51.100.30, not-an-ip"},
        {"X-Forwarded-For": ",".join(["198.51.100.31"] * 300)},
        {"X-Real-IP": "999.1.1.1"},
    ]
    # all of them are the peer (127.0.0.1): one bucket of 2, whatever the header says
    codes = [httpx.get(trusting.url + "/v1/voices", headers=headers).status_code for headers in bad]
    assert codes == [200, 200, 429, 429]
    assert httpx.get(trusting.url + "/health").status_code == 200  # the process is fine


# ------------------------------------------------------------------ through the real nginx
def test_through_nginx_each_client_address_has_its_own_bucket(espeak_env):
    """deploy/nginx's rendered config in front of a rate-limited TTS that trusts only nginx's
    address (the default, loopback). The clients connect to nginx from other loopback addresses
    (127.0.0.2, 127.0.0.3: all of 127/8 is this machine), so nginx's X-Forwarded-For is the only
    way the service can tell them apart."""
    service = tts(espeak_env, "127.0.0.1", "limits-client-addr-nginx")
    unused = f"127.0.0.1:{free_port()}"
    gateway = Gateway(
        Settings(asr=(unused,), tts=(f"127.0.0.1:{service.port}",), orchestrator=(unused,)),
        label="limits-client-addr-nginx-gw",
    )
    try:
        gateway.start()

        def client(source: str) -> httpx.Client:
            return httpx.Client(base_url=gateway.http, transport=httpx.HTTPTransport(local_address=source))

        with client("127.0.0.2") as a, client("127.0.0.3") as b:
            assert [a.get("/v1/voices").status_code for _ in range(3)] == [200, 200, 429]
            assert [b.get("/v1/voices").status_code for _ in range(2)] == [200, 200]
            # what a client writes itself into X-Forwarded-For / X-Real-IP does not buy a new bucket
            spoofed = {"X-Forwarded-For": "198.51.100.99", "X-Real-IP": "198.51.100.98"}
            assert a.get("/v1/voices", headers=spoofed).status_code == 429
        remotes = {entry["remote"] for entry in gateway.wait_entries(lambda e: e["uri"] == "/v1/voices", 6)}
        assert remotes == {"127.0.0.2", "127.0.0.3"}
    finally:
        gateway.stop()
        service.stop()

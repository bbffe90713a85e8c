"""The SSRF guard's rules: how hosts are read (checked against the C library's own parser),
which addresses are refused in which spelling, and the operator's settings."""

# Look-alike characters (fullwidth digits and letters) are the point of several cases here.
# ruff: noqa: RUF001

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from app.network_guard import (
    ALLOW_SETTING,
    DENY_SETTING,
    GuardedResolver,
    NetworkPolicy,
    RefusedAddress,
    guarded_socket_factory,
    literal_address,
    parse_networks,
    server_host,
)
from app.settings import Settings

STRICT = NetworkPolicy(host_addresses=frozenset, host_names=frozenset)
LOCAL = NetworkPolicy(allow_local=True, host_addresses=frozenset, host_names=frozenset)


# --- reading hosts the way the connection does -------------------------------------------------

INET_ATON_FORMS = [
    "127.0.0.1", "127.1", "127.0.1", "0177.0.0.1", "0177.0.0.01", "0x7f000001", "0X7F.1",
    "0x7f.0.0.1", "2130706433", "017700000001", "0x7f.0x0.0x0.0x1", "1.16777215", "1.2.65535",
    "0", "0x", "08", "0x1g", "256.1", "1.16777216", "1.2.3.4.5", "1..2", ".1", "-1",
    "4294967295", "4294967296", "0xffffffff", "0x100000000", "169.254.43518", "0xa9.0xfe.0xa9fe",
]


@pytest.mark.parametrize("host", INET_ATON_FORMS)
def test_ipv4_forms_are_read_exactly_as_inet_aton_reads_them(host: str) -> None:
    """The C library is the oracle: whatever it maps to an address, we map to the same one."""
    try:
        expected: ipaddress.IPv4Address | None = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    assert literal_address(host) == expected


def test_a_root_dot_is_read_as_the_address_stricter_than_inet_aton() -> None:
    # getaddrinfo would send "127.0.0.1." to DNS; refusing it as loopback is the safe reading.
    assert literal_address("127.0.0.1.") == ipaddress.IPv4Address("127.0.0.1")
    assert literal_address("[::1]") == ipaddress.IPv6Address("::1")
    assert literal_address("fe80::1%eth0") == ipaddress.IPv6Address("fe80::1")
    assert literal_address("kube.example.com") is None


@pytest.mark.parametrize(("url", "host"), [
    ("https://ⓛocalhost:6443", "localhost"),
    ("https://LOCALHOST.", "localhost"),
    ("https://１２７.０.０.１", "127.0.0.1"),
    ("https://127。0。0。1", "127.0.0.1"),
    ("https://①②⑦.0.0.1", "127.0.0.1"),
    ("https://[::ffff:127.0.0.1]:443", "::ffff:7f00:1"),
    ("https://ｍｅｔａｄａｔａ.google.internal", "metadata.google.internal"),
    ("https://kube.example.com:6443/path", "kube.example.com"),
])
def test_hosts_are_folded_the_way_the_http_client_folds_them(url: str, host: str) -> None:
    assert server_host(url) == host


@pytest.mark.parametrize(("host", "embedded"), [
    ("::ffff:127.0.0.1", "127.0.0.1"),          # IPv4-mapped
    ("::127.0.0.1", "127.0.0.1"),               # IPv4-compatible (deprecated)
    ("::ffff:0:127.0.0.1", "127.0.0.1"),        # IPv4-translated (SIIT)
    ("64:ff9b::169.254.169.254", "169.254.169.254"),  # NAT64 well-known prefix
    ("64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254"),  # NAT64 local-use /48 (RFC 6052)
    ("2002:a9fe:a9fe::1", "169.254.169.254"),   # 6to4
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo client (obfuscated)
])
def test_ipv4_embedded_in_ipv6_is_judged_as_the_ipv4_it_carries(host: str, embedded: str) -> None:
    reason = STRICT.refusal(ipaddress.IPv6Address(host))
    assert reason is not None and embedded in reason
    assert STRICT.refusal(ipaddress.IPv4Address(embedded)) is not None


# --- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize(("address", "word"), [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "metadata"), ("169.254.170.2", "metadata"), ("168.63.129.16", "metadata"),
    ("100.100.100.200", "metadata"), ("fd00:ec2::254", "metadata"), ("fd20:ce::254", "metadata"),
    ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("fe80::1%1", "link-local"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"),
])
def test_local_metadata_and_special_addresses_are_refused(address: str, word: str) -> None:
    reason = STRICT.refusal(ipaddress.ip_address(address))
    assert reason is not None and word in reason


@pytest.mark.parametrize("address", [
    "10.0.0.1", "172.16.5.4", "172.31.255.254", "192.168.1.10", "fc00::1", "fd12:3456::1",
    "100.64.0.1", "203.0.113.7", "2001:db8::1",
])
def test_private_and_public_addresses_stay_allowed(address: str) -> None:
    assert STRICT.refusal(ipaddress.ip_address(address)) is None


def test_allowing_local_clusters_lifts_loopback_and_this_host_but_never_metadata() -> None:
    own = ipaddress.ip_address("192.0.2.77")
    strict = NetworkPolicy(host_addresses=lambda: frozenset({own}), host_names=frozenset)
    local = NetworkPolicy(allow_local=True, host_addresses=lambda: frozenset({own}),
                          host_names=frozenset)
    assert strict.refusal(own) == "an address of this FleetGraph host"
    for address in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "192.0.2.77"):
        assert strict.refusal(ipaddress.ip_address(address)) is not None
        assert local.refusal(ipaddress.ip_address(address)) is None
    for address in ("169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254",
                    "100.100.100.200", "168.63.129.16", "169.254.3.4", "0.0.0.0"):
        assert local.refusal(ipaddress.ip_address(address)) is not None, address


def test_operator_deny_always_wins_and_allow_overrides_the_built_in_rules() -> None:
    policy = NetworkPolicy(
        deny=parse_networks(DENY_SETTING, "10.9.0.0/16, 2001:db8::/32"),
        allow=parse_networks(ALLOW_SETTING, "10.0.0.0/8,127.0.0.53"),
        host_addresses=frozenset, host_names=frozenset,
    )
    assert policy.refusal(ipaddress.ip_address("10.9.1.1")) == (
        f"a network listed in {DENY_SETTING}")
    assert policy.refusal(ipaddress.ip_address("::ffff:10.9.1.1")) is not None
    assert policy.refusal(ipaddress.ip_address("2001:db8::5")) is not None
    assert policy.refusal(ipaddress.ip_address("10.1.1.1")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.53")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is not None


def test_this_hosts_addresses_come_from_the_kernel() -> None:
    """The default policy reads the interfaces (``/proc``); loopback is always among them."""
    policy = NetworkPolicy()
    addresses = policy.host_addresses()
    if not os.path.exists("/proc/net/fib_trie"):
        pytest.skip("no /proc/net/fib_trie on this system")
    assert ipaddress.ip_address("127.0.0.1") in addresses
    for address in addresses:
        assert policy.refusal(address) is not None, address


# --- the early, static check at registration --------------------------------------------------


@pytest.mark.parametrize("server", [
    "https://127.1:6443", "https://0177.0.0.1", "https://0x7f000001", "https://2130706433",
    "https://[::ffff:127.0.0.1]", "https://[::1]", "https://[0:0:0:0:0:0:0:1]",
    "https://localhost.", "https://LocalHost", "https://kind.localhost", "https://ⓛocalhost",
    "https://１２７.０.０.１", "https://ip6-localhost", "https://127.0.0.1.",
])
def test_loopback_in_any_spelling_is_refused_early_unless_local_clusters_are_allowed(
    server: str,
) -> None:
    reason = STRICT.url_refusal(server)
    assert reason is not None and "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS=1 allows" in reason
    assert LOCAL.url_refusal(server) is None


@pytest.mark.parametrize("server", ["https://0.0.0.0", "https://0", "https://[::]"])
def test_unspecified_addresses_are_refused_even_with_local_clusters_allowed(server: str) -> None:
    for policy in (STRICT, LOCAL):
        reason = policy.url_refusal(server)
        assert reason is not None and "unspecified" in reason


@pytest.mark.parametrize("server", [
    "https://169.254.169.254", "https://169.254.43518", "https://0xa9fea9fe",
    "https://[::ffff:169.254.169.254]", "https://[fd00:ec2::254]", "https://100.100.100.200",
    "https://168.63.129.16", "https://metadata.google.internal", "https://metadata.google.internal.",
    "https://METADATA.goog", "https://metadata", "https://ｍｅｔａｄａｔａ.google.internal",
    "https://[fe80::1%25eth0]:6443",
])
def test_metadata_endpoints_are_refused_early_even_with_local_clusters_allowed(server: str) -> None:
    for policy in (STRICT, LOCAL):
        reason = policy.url_refusal(server)
        assert reason is not None, (server, policy)
        assert "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS" not in reason


def test_this_hosts_own_name_is_refused_early() -> None:
    policy = NetworkPolicy(host_addresses=frozenset, host_names=lambda: frozenset({"fleet-01"}))
    assert policy.url_refusal("https://FLEET-01.:6443") is not None
    assert policy.url_refusal("https://fleet-02:6443") is None


def test_names_only_dns_can_judge_pass_the_early_check() -> None:
    for server in ("https://kube.example.com", "https://10.0.0.1:6443", "https://[fd12::1]"):
        assert STRICT.url_refusal(server) is None


# --- enforcement at connect time ---------------------------------------------------------------


class _FixedAnswers(AbstractResolver):
    """A stand-in DNS server: answers ``host`` with fixed addresses."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=address, port=port,
                          family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                          proto=0, flags=0)
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_drops_refused_addresses_and_keeps_the_rest() -> None:
    inner = _FixedAnswers("127.0.0.1", "10.1.2.3", "169.254.169.254", "fd12::7")
    resolver = GuardedResolver(STRICT, inner=inner)
    answers = await resolver.resolve("mixed.example", 443)
    assert [answer["host"] for answer in answers] == ["10.1.2.3", "fd12::7"]
    await resolver.close()
    assert inner.closed


async def test_a_name_resolving_only_to_refused_addresses_fails_without_naming_them() -> None:
    resolver = GuardedResolver(STRICT, inner=_FixedAnswers("169.254.169.254", "::ffff:7f00:1"))
    with pytest.raises(RefusedAddress) as refused:
        await resolver.resolve("rebinding.example", 443)
    assert "rebinding.example" in str(refused.value) and "metadata" in str(refused.value)
    assert "169.254.169.254" not in refused.value.reason


def test_socket_factory_refuses_before_a_socket_exists() -> None:
    factory = guarded_socket_factory(STRICT)
    for family, sockaddr in ((socket.AF_INET, ("127.0.0.1", 80)),
                             (socket.AF_INET6, ("::ffff:169.254.169.254", 80, 0, 0)),
                             (socket.AF_INET6, ("fe80::1%lo", 80, 0, 1))):
        with pytest.raises(RefusedAddress):
            factory((family, socket.SOCK_STREAM, 6, "", sockaddr))
    sock = factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 80)))
    sock.close()


# --- settings ------------------------------------------------------------------------------------


def test_network_settings_are_read_from_the_environment() -> None:
    settings = Settings.from_env({DENY_SETTING: "10.9.0.0/16", ALLOW_SETTING: "127.0.0.53, ::1"})
    assert settings.cluster_networks_deny == (ipaddress.ip_network("10.9.0.0/16"),)
    assert settings.cluster_networks_allow == (
        ipaddress.ip_network("127.0.0.53/32"), ipaddress.ip_network("::1/128"))
    assert Settings.from_env({}).cluster_networks_deny == ()


@pytest.mark.parametrize(("value", "fragment"), [
    ("10.0.0.0/33", "not an IP network"), ("ten.0.0.0/8", "not an IP network"),
    ("10.0.0.1/8", "did you mean 10.0.0.0/8"), ("10.0.0.0/8,,fd00::/8,garbage", "'garbage'"),
])
def test_a_malformed_network_setting_is_refused_naming_it(value: str, fragment: str) -> None:
    for setting in (DENY_SETTING, ALLOW_SETTING):
        with pytest.raises(ValueError) as refused:
            Settings.from_env({setting: value})
        assert str(refused.value).startswith(f"{setting}: ") and fragment in str(refused.value)


def test_serve_refuses_to_start_on_a_malformed_network_setting_without_a_traceback() -> None:
    env = {**os.environ, DENY_SETTING: "10.0.0.0/8,169.254.0.0/99"}
    fleetgraph = str(Path(sys.executable).with_name("fleetgraph"))
    result = subprocess.run([fleetgraph, "serve", "--port", "0"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert DENY_SETTING in result.stderr and "169.254.0.0/99" in result.stderr
    assert "Traceback" not in result.stderr

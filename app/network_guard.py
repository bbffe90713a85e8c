"""Where a tenant's cluster may make FleetGraph connect: the SSRF guard, enforced per connection.

A registered cluster is a URL a tenant chose, and FleetGraph connects to it from inside its own
network, with its own identity: the cloud metadata service (the host's IAM credentials), its
own ports on loopback, the host's other services. Checking the URL *text* cannot close that
door. ``127.1``, ``0x7f000001``, ``[::ffff:127.0.0.1]``, ``ⓛocalhost``, a DNS name pointing at
169.254.169.254, or a name whose DNS answer changes after registration all pass a text check
and still land on the forbidden address.

So the decision is taken on *addresses*, at the moment of connecting, for every connection the
Kubernetes client makes (sync, metrics, heartbeats, ``testClusterConnection``):

* :class:`GuardedResolver` wraps aiohttp's resolver and drops refused addresses from every DNS
  answer; a name that resolves only to refused addresses fails, saying why;
* :func:`guarded_socket_factory` checks the exact socket address of every connection attempt.
  That also covers IP literals, for which aiohttp never asks the resolver, and anything a
  resolver could return later (DNS rebinding cannot slip between check and connect: the
  checked address is the one connected).

:meth:`NetworkPolicy.url_refusal` is the early, static half, for registration and rotation: it
reads the host the way the connection will (yarl's IDNA/UTS-46 folding, then the numeric forms
``inet_aton`` accepts) and refuses what is already certain, with a message for the user. It is
a courtesy; the connect-time check is the guarantee.

Refused by default: loopback, link-local, unspecified, multicast, reserved/broadcast, the
known cloud metadata addresses, this host's own addresses, and any of them embedded in an
IPv6 address (IPv4-mapped, -compatible, -translated, 6to4, NAT64, Teredo). Private ranges stay
allowed: that is where real clusters live. ``FLEETGRAPH_ALLOW_LOCAL_CLUSTERS`` lifts only
loopback and this host's addresses (kind, k3d, kubesim); metadata and link-local stay refused.
Operators tighten or loosen with ``FLEETGRAPH_CLUSTER_NETWORKS_DENY`` (always wins) and
``FLEETGRAPH_CLUSTER_NETWORKS_ALLOW`` (wins over the built-in rules).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, TypeAlias

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

if TYPE_CHECKING:
    from aiohappyeyeballs import AddrInfoType

    from app.settings import Settings

__all__ = [
    "ALLOW_SETTING",
    "DENY_SETTING",
    "GuardedResolver",
    "IPAddress",
    "IPNetwork",
    "NetworkPolicy",
    "RefusedAddress",
    "guarded_socket_factory",
    "literal_address",
    "local_addresses",
    "parse_networks",
    "refusal_in",
    "server_host",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

DENY_SETTING: Final = "FLEETGRAPH_CLUSTER_NETWORKS_DENY"
ALLOW_SETTING: Final = "FLEETGRAPH_CLUSTER_NETWORKS_ALLOW"
LOCAL_SETTING: Final = "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS"


@dataclass(frozen=True, slots=True)
class _Rule:
    network: IPNetwork
    reason: str
    local: bool = False  # lifted by FLEETGRAPH_ALLOW_LOCAL_CLUSTERS


def _rule(cidr: str, reason: str, *, local: bool = False) -> _Rule:
    return _Rule(ipaddress.ip_network(cidr), reason, local)


_METADATA = "a cloud metadata endpoint"
# First match decides, so the metadata addresses come before the ranges that hold them.
_RULES: Final[tuple[_Rule, ...]] = (
    _rule("169.254.169.254/32", f"{_METADATA} (AWS, GCP, Azure, OpenStack and others)"),
    _rule("169.254.170.2/32", f"{_METADATA} (AWS ECS task credentials)"),
    _rule("168.63.129.16/32", f"{_METADATA} (Azure WireServer)"),
    _rule("100.100.100.200/32", f"{_METADATA} (Alibaba Cloud)"),
    _rule("fd00:ec2::254/128", f"{_METADATA} (AWS, IPv6)"),
    _rule("fd20:ce::254/128", f"{_METADATA} (GCP, IPv6)"),
    _rule("127.0.0.0/8", "a loopback address", local=True),
    _rule("::1/128", "a loopback address", local=True),
    _rule("0.0.0.0/8", "an unspecified address (it reaches this host)"),
    _rule("::/128", "an unspecified address (it reaches this host)"),
    _rule("169.254.0.0/16", "a link-local address"),
    _rule("fe80::/10", "a link-local address"),
    _rule("224.0.0.0/4", "a multicast address"),
    _rule("ff00::/8", "a multicast address"),
    _rule("240.0.0.0/4", "a reserved or broadcast address"),
)
_HOST_ADDRESS_REASON = "an address of this FleetGraph host"

# Names that are certain before any DNS lookup. The connect-time check covers every other name.
_METADATA_NAMES: Final = frozenset({
    "metadata.google.internal", "metadata.goog", "metadata", "instance-data",
    "instance-data.ec2.internal", "metadata.tencentyun.com", "metadata.azure.internal",
})
_LOOPBACK_NAMES: Final = frozenset({
    "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback",
})

_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL: Final = ipaddress.ip_network("64:ff9b:1::/48")


# --- reading hosts the way the connection will ---------------------------------------------


def server_host(url: str) -> str | None:
    """The host the HTTP client will connect to for ``url``: yarl's encoding (IDNA/UTS-46
    folding, so ``ⓛocalhost`` is ``localhost``), lower-cased, without brackets or the root
    dot. ``None`` when yarl cannot encode it (then the client cannot connect either)."""
    try:
        host = URL(url).raw_host
    except (ValueError, UnicodeError):
        return None
    if not host:
        return None
    return host.lower().strip("[]").removesuffix(".")


_DIGITS: Final = {8: "01234567", 10: "0123456789", 16: "0123456789abcdef"}


def _inet_aton_part(text: str) -> int | None:
    """One dotted part as C ``inet_aton`` reads it: ``0x`` hex, leading-``0`` octal, decimal."""
    text = text.lower()
    if text.startswith("0x"):
        digits, base = text[2:], 16
    elif len(text) > 1 and text[0] == "0":
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    if not digits or any(ch not in _DIGITS[base] for ch in digits):
        return None
    return int(digits, base)


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """IPv4 in every form ``inet_aton`` (and so ``getaddrinfo``) accepts: ``a.b.c.d``,
    ``a.b.c`` (c fills 16 bits), ``a.b`` (b fills 24 bits), ``a`` (32 bits), each part decimal,
    octal or hex. ``127.1``, ``0177.0.0.1``, ``0x7f000001`` and ``2130706433`` are all 127.0.0.1."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or any(part == "" for part in parts):
        return None
    values = [_inet_aton_part(part) for part in parts]
    if any(value is None for value in values):
        return None
    numbers = [value for value in values if value is not None]
    *leading, last = numbers
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (5 - len(numbers))):
        return None
    packed = 0
    for value in leading:
        packed = (packed << 8) | value
    packed = (packed << (8 * (5 - len(numbers)))) | last
    return ipaddress.IPv4Address(packed)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` denotes with no DNS lookup, or ``None`` if it is a name.

    IPv6 in any RFC 4291 spelling (brackets and a ``%zone`` allowed), IPv4 in every
    ``inet_aton`` form. A trailing root dot is ignored (``127.0.0.1.`` is read as the address:
    the stricter reading is the safe one here)."""
    host = host.strip().lower().strip("[]").removesuffix(".")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    return _inet_aton(host)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> Iterator[tuple[str, ipaddress.IPv4Address]]:
    """IPv4 addresses an IPv6 address carries, with the name of the form carrying it."""
    value = int(address)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        yield "IPv4-mapped", address.ipv4_mapped
    elif value >> 32 == 0 and value > 1:  # ::a.b.c.d, but not :: or ::1
        yield "IPv4-compatible", low32
    elif value >> 32 == 0xFFFF0000:  # ::ffff:0:a.b.c.d (SIIT)
        yield "IPv4-translated", low32
    if address in _NAT64:
        yield "NAT64", low32
    elif address in _NAT64_LOCAL:  # RFC 6052 /48: bits 48-63 and 72-87, around the u octet
        high = (value >> 64) & 0xFFFF
        low = (value >> 40) & 0xFFFF
        yield "NAT64", ipaddress.IPv4Address((high << 16) | low)
    if address.sixtofour is not None:
        yield "6to4", address.sixtofour
    if address.teredo is not None:
        server, client = address.teredo
        yield "Teredo", server
        yield "Teredo", client


def _unscoped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(int(address))
    return address


# --- this host's own addresses and names -----------------------------------------------------

_LOCAL_CACHE_S = 30.0
_local_cache: tuple[float, frozenset[IPAddress]] | None = None


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def _interface_addresses() -> frozenset[IPAddress]:
    """Every address configured on this host's interfaces, from the kernel's own tables
    (``/proc/net/fib_trie`` local /32 entries, ``/proc/net/if_inet6``); no DNS involved."""
    found: set[IPAddress] = set()
    previous = ""
    for line in _read("/proc/net/fib_trie").splitlines():
        stripped = line.strip()
        if stripped.startswith("/32 host LOCAL") and previous.startswith("|-- "):
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv4Address(previous[4:].strip()))
        previous = stripped
    for line in _read("/proc/net/if_inet6").splitlines():
        raw = line.split(" ", 1)[0]
        if len(raw) == 32:
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv6Address(int(raw, 16)))
    return frozenset(found)


def local_addresses() -> frozenset[IPAddress]:
    """This host's addresses, re-read at most every 30 s (interfaces come and go).

    On systems without ``/proc`` this is empty; loopback is refused by its own rule anyway."""
    global _local_cache
    now = time.monotonic()
    if _local_cache is None or now - _local_cache[0] > _LOCAL_CACHE_S:
        _local_cache = (now, _interface_addresses())
    return _local_cache[1]


def _own_names() -> frozenset[str]:
    name = socket.gethostname().lower().removesuffix(".")
    return frozenset({name, name.split(".", 1)[0]}) - {""}


# --- settings ------------------------------------------------------------------------------


def parse_networks(setting: str, value: str | None) -> tuple[IPNetwork, ...]:
    """A comma-separated CIDR list (a bare address is a /32 or /128). Raises ``ValueError``
    naming ``setting`` and the bad entry, so a typo stops the server at start."""
    networks: list[IPNetwork] = []
    for raw in (value or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            if "has host bits set" in str(exc):
                fixed = ipaddress.ip_network(entry, strict=False)
                raise ValueError(
                    f"{setting}: {entry!r} has host bits set; did you mean {fixed}?"
                ) from None
            raise ValueError(
                f"{setting}: {entry!r} is not an IP network in CIDR notation; expected a "
                "comma-separated list such as 10.0.0.0/8,fd00::/8"
            ) from None
    return tuple(networks)


# --- the policy ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NetworkPolicy:
    """Which addresses a cluster connection may reach. The default refuses everything local."""

    allow_local: bool = False
    deny: tuple[IPNetwork, ...] = ()
    allow: tuple[IPNetwork, ...] = ()
    host_addresses: Callable[[], frozenset[IPAddress]] = field(
        default=local_addresses, compare=False, repr=False
    )
    host_names: Callable[[], frozenset[str]] = field(
        default=_own_names, compare=False, repr=False
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> NetworkPolicy:
        return cls(
            allow_local=settings.allow_local_clusters,
            deny=settings.cluster_networks_deny,
            allow=settings.cluster_networks_allow,
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to ``address`` is refused, or ``None`` if it may go ahead."""
        address = _unscoped(address)
        if self._listed(address, self.deny):
            return f"a network listed in {DENY_SETTING}"
        if self._listed(address, self.allow):
            return None  # the operator's explicit word on this very address
        reason = self._builtin_refusal(address)
        if reason is not None or isinstance(address, ipaddress.IPv4Address):
            return reason
        for form, inner in _embedded_ipv4(address):
            if self._listed(inner, self.deny):
                return f"the {form} form of a network listed in {DENY_SETTING}"
            if self._listed(inner, self.allow):
                continue
            inner_reason = self._builtin_refusal(inner)
            if inner_reason is not None:
                return f"the {form} form of {inner_reason} ({inner})"
        return None

    def _builtin_refusal(self, address: IPAddress) -> str | None:
        for rule in _RULES:
            if address.version == rule.network.version and address in rule.network:
                return None if rule.local and self.allow_local else rule.reason
        if not self.allow_local and address in self.host_addresses():
            return _HOST_ADDRESS_REASON
        return None

    @staticmethod
    def _listed(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
        return any(
            address.version == network.version and address in network for network in networks
        )

    def host_refusal(self, host: str) -> str | None:
        """Why ``host`` (as :func:`server_host` gives it) is refused, when that is certain
        without DNS; ``None`` when only the connection can tell."""
        address = literal_address(host)
        if address is not None:
            reason = self.refusal(address)
            if reason is None:
                return None
            spelled = "" if str(address) == host else f" ({address})"
            return f"{host}{spelled} is {reason}"
        name = host.lower().strip("[]").removesuffix(".")
        if name in _METADATA_NAMES:
            return f"{name} is the name of {_METADATA}"
        if self.allow_local:
            return None
        if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
            return f"{name} is a name for this host's loopback address"
        if name in self.host_names():
            return f"{name} is this FleetGraph host's own name"
        return None

    def url_refusal(self, url: str) -> str | None:
        """A user-facing sentence saying why a server URL is refused, or ``None``."""
        host = server_host(url)
        if host is None:
            return "its host cannot be encoded as a DNS name (IDNA)"
        reason = self.host_refusal(host)
        if reason is None:
            return None
        hint = ""
        if not self.allow_local and replace(self, allow_local=True).host_refusal(host) is None:
            hint = f" ({LOCAL_SETTING}=1 allows loopback and this host, e.g. for local clusters)"
        return (
            f"{reason}; FleetGraph does not connect to loopback, link-local, metadata or "
            f"this host's addresses{hint}"
        )


# --- enforcement at connect time -----------------------------------------------------------


class RefusedAddress(OSError):
    """A connection the policy refused. An ``OSError`` so aiohttp reports it as the connection
    failure it is (``ClientConnectorError``); ``reason`` never holds a resolved address."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(errno.EACCES, f"{target} is refused by the network policy: {reason}")
        self.target = target
        self.reason = reason


def refusal_in(exc: BaseException) -> RefusedAddress | None:
    """The :class:`RefusedAddress` behind ``exc`` (aiohttp wraps it), if there is one."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RefusedAddress):
            return current
        stack.extend((current.__cause__, current.__context__, getattr(current, "os_error", None)))
    return None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with refused addresses taken out of every answer.

    A name resolving to both allowed and refused addresses connects only to the allowed ones;
    one resolving only to refused addresses fails with the reason (not the addresses: a
    tenant learns nothing about internal DNS from the refusal)."""

    def __init__(self, policy: NetworkPolicy, *, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        reasons: list[str] = []
        for answer in answers:
            address = literal_address(answer["host"])
            reason = "not an IP address" if address is None else self._policy.refusal(address)
            if reason is None:
                allowed.append(answer)
            else:
                reasons.append(reason)
        if not allowed:
            why = reasons[0] if reasons else "no address"
            raise RefusedAddress(host, f"it resolves only to refused addresses ({why})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(policy: NetworkPolicy) -> Callable[[AddrInfoType], socket.socket]:
    """An aiohttp ``socket_factory`` that refuses to open a socket toward a refused address.

    aiohttp calls it for every connection attempt with the exact address about to be
    connected, IP literals included, so nothing reaches a refused address by any spelling."""

    def open_socket(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = literal_address(str(sockaddr[0]))
        if address is None:
            raise RefusedAddress(str(sockaddr[0]), "not an IP address")
        reason = policy.refusal(address)
        if reason is not None:
            raise RefusedAddress(str(address), reason)
        return socket.socket(family=family, type=type_, proto=proto)

    return open_socket


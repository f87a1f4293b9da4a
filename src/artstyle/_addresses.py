"""The one address policy: resolving a host name within a deadline, and what kind of address
each answer is. ``infer.sources`` refuses image URLs on this machine or its network (SSRF);
``artstyle serve`` asks whether a --host is this machine only. Standard library only.

An IPv6 address can carry an IPv4 one that the network will reach: IPv4-mapped (::ffff:a.b.c.d),
6to4 (2002::/16), Teredo (2001::/32) and NAT64 (64:ff9b::/96). Such an address is judged by the
IPv4 address it carries, so that 2002:7f00:1:: is loopback, as 127.0.0.1 is. A mapped or NAT64
address is that IPv4 address, translated (DNS64 networks answer every IPv4-only host so), and
is judged by it alone; a tunnel's (6to4, Teredo) is judged by its own prefix too.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# What an address must not be to count as the public internet, in the order they are reported.
NON_PUBLIC = ("loopback", "link_local", "multicast", "unspecified", "reserved", "private")


def resolve(host: str, port: int | None = None, timeout: float | None = None) -> list[IPAddress]:
    """Every address ``host`` stands for (an address literal stands for itself). The system
    resolver has no timeout of its own, so it runs on a daemon thread that is given up on after
    ``timeout`` seconds (``TimeoutError``); a name that does not resolve raises ``socket.gaierror``."""
    answer: dict = {}

    def lookup() -> None:
        try:
            answer["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread as it is
            answer["error"] = exc

    thread = threading.Thread(target=lookup, name="artstyle-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"resolving {host} took longer than {timeout:g}s")
    if "error" in answer:
        raise answer["error"]
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in answer["infos"]]


def embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (none for an IPv4 address or a plain IPv6 one)."""
    if ip.version == 4:
        return []
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)  # (server, client): traffic goes through both
    if ip in NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address is not on the public internet ("loopback", "link-local"...), judging the
    IPv4 address it carries first; None when it is public."""
    carried = embedded_ipv4(ip)
    translated = ip.version == 6 and (ip.ipv4_mapped is not None or ip in NAT64)
    for candidate in carried if translated else [*carried, ip]:
        for kind in NON_PUBLIC:
            if getattr(candidate, f"is_{kind}"):
                return kind.replace("_", "-")
        if not candidate.is_global:
            return "non-public"
    return None


def is_allowed(ip: IPAddress, allow: bool | Iterable[str]) -> bool:
    """``allow``: True allows every address, or a list of networks ("10.1.2.0/24") allows those
    (an address that carries an IPv4 one is allowed when either is in them)."""
    if not allow or allow is True:
        return bool(allow)
    networks = [ipaddress.ip_network(net, strict=False) for net in allow]
    return any(candidate in net for candidate in [ip, *embedded_ipv4(ip)] for net in networks)


def refusal(ip: IPAddress, allow: bool | Iterable[str]) -> str | None:
    """Why a connection to ``ip`` is refused under ``allow`` (see ``is_allowed``); None if it is not."""
    return None if is_allowed(ip, allow) else blocked_reason(ip)


def is_loopback(ip: IPAddress) -> bool:
    """This machine only: a loopback address, or one that carries a loopback IPv4 address."""
    return blocked_reason(ip) == "loopback"

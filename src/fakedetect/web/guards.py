"""Who may use the app: the API token and the host names a request may name (DNS-rebinding guard)."""

from __future__ import annotations

import hmac
import ipaddress
import socket


def token_ok(token: str | None, authorization: str) -> bool:
    """Whether an ``Authorization`` header carries the API token (always, when no token is set)."""
    if not token:
        return True
    given = authorization.removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def default_allowed_hosts() -> list[str]:
    """Host names the app answers to unless told otherwise: localhost and this machine's own names (an IP address
    is always accepted; see :func:`host_allowed`)."""
    names = {"localhost", socket.gethostname(), socket.getfqdn()}
    return sorted(n.lower() for n in names if n)


def host_allowed(host: str, allowed: list[str] | None) -> bool:
    """Whether a request's ``Host`` header names this server: an IP address, or one of ``allowed`` (".example.org"
    matches its subdomains; "*" or None: any host).

    A DNS-rebinding page reaches a server on localhost or the LAN under the attacker's own host name; refusing
    names the server was not told about stops it (IP addresses are no use to such a page).
    """
    if allowed is None or "*" in allowed or not host.strip():
        return True  # no Host header (HTTP/1.0 health checks): a browser, and so a rebinding page, always sends one
    name = _hostname(host)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return any(name == a or (a.startswith(".") and name.endswith(a)) for a in (_hostname(a) for a in allowed))


def _hostname(host: str) -> str:
    """A Host header or an allowed entry as a bare lower-case name: no port, brackets or trailing dot."""
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    return name.rstrip(".") if name != "." else name

"""Host addresses and ports: one place for what a bind address means to probes, URLs and compose.

`bind` is an IP address (settings.py checks it): 127.0.0.1 or ::1 publish on this machine only,
0.0.0.0 or :: on every network. A server published on a wildcard address is reached locally
through the loopback address of the same family.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request


def is_loopback(bind: str) -> bool:
    return ipaddress.ip_address(bind).is_loopback


def local_host(bind: str) -> str:
    """The address to reach a port published on `bind` from this machine."""
    address = ipaddress.ip_address(bind)
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return str(address)


def url_host(bind: str) -> str:
    """local_host(bind) as it goes into a URL (IPv6 in brackets)."""
    host = local_host(bind)
    return f"[{host}]" if ":" in host else host


def compose_bind(bind: str) -> str:
    """`bind` as the host part of a compose port mapping (IPv6 in brackets: [::1]:8888:8888)."""
    return f"[{bind}]" if ":" in bind else bind


def port_in_use(bind: str, port: int) -> bool:
    """Whether something already accepts connections on the port (as the server would be reached)."""
    host = local_host(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            return sock.connect_ex((host, port)) == 0
        except OSError:  # e.g. no IPv6 on this machine: nothing can listen there either
            return False


def free_port(bind: str) -> int:
    """A port nothing listens on now, as the system picks one (`port: auto` for `lab --local`)."""
    host = local_host(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((bind, 0))
        return sock.getsockname()[1]


def url_answers(url: str) -> bool:
    """Whether GET url answers 200 within 2 seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):
        return False


def split_address(address: str) -> tuple[str, int]:
    """'127.0.0.1:8888' or '[::1]:8888' (as `docker compose port` prints) -> (host, port)."""
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]"), int(port)

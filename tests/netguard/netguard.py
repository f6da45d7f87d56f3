"""A guard that fails any network connection outside loopback.

Installed for every test by ``tests/conftest.py`` and, through ``sitecustomize.py`` in this folder
(put on PYTHONPATH), in every subprocess a test starts. A blocked attempt raises and, when
``THREADLINE_NETGUARD_LOG`` is set, is appended to that file so a parent test can see it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


class NetworkBlocked(OSError):
    """A test tried to reach beyond loopback."""


def _allowed(sock: socket.socket, address: Any) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost",):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _record(address: Any) -> None:
    path = os.environ.get("THREADLINE_NETGUARD_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{address!r}\n")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _allowed(self, address):
        _record(address)
        raise NetworkBlocked(f"test tried to connect outside loopback: {address!r}")
    _original_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _allowed(self, address):
        _record(address)
        raise NetworkBlocked(f"test tried to connect outside loopback: {address!r}")
    return _original_connect_ex(self, address)


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def uninstall() -> None:
    socket.socket.connect = _original_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _original_connect_ex  # type: ignore[method-assign]

"""``channels.media_download`` against a hostile HTTP server written on a raw socket (uvicorn will not send a
body longer than its ``Content-Length``; a hostile server will), and its host rules.

Also Telegram's file path rule (``channels.telegram.media._relative_path``) and Slack's file references.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from channels.media_download import Hosts, download, new_client, origin_of
from channels.slack.files import UNREADABLE_PREFIX, media_refs
from channels.telegram.media import _relative_path
from core.errors import MediaRefused, MediaUnavailable

LIMIT = 64 * 1024


class RawServer:
    """Answers every connection with ``answer(path)`` (raw bytes) and records each request's head."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads: list[str] = []
        self.sent = 0
        self.answers: dict[str, tuple[bytes, int]] = {}  # path -> (head, body bytes to write)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                text = head.decode("latin-1")
                self.heads.append(text)
                path = text.split(" ", 2)[1] if text.count(" ") >= 2 else "/"
                answer, body_length = self.answers.get(
                    path, (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0)
                )
                try:
                    conn.sendall(answer)
                    block = b"\x89PNG\r\n\x1a\n" + b"\x00" * (64 * 1024 - 8)
                    written = 0
                    while written < body_length:
                        piece = block[: min(len(block), body_length - written)]
                        conn.sendall(piece)
                        written += len(piece)
                        self.sent += len(piece)
                except OSError:
                    pass  # the client hung up

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


def hosts_of(server: RawServer) -> Hosts:
    return Hosts(origins=origin_of(server.url))


async def fetch(server: RawServer, path: str, **kwargs: object) -> bytes:
    async with new_client() as client:
        got = await download(
            client,
            server.url + path,
            platform="Test",
            shown="photo.png",
            max_bytes=LIMIT,
            hosts=hosts_of(server),
            **kwargs,  # type: ignore[arg-type]
        )
    return got.data


async def test_a_body_longer_than_its_content_length_is_cut_at_the_length(raw: RawServer) -> None:
    raw.answers["/liar"] = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: image/png\r\n\r\n",
        8 * 1024 * 1024,
    )
    data = await fetch(raw, "/liar")
    assert len(data) == 1000 and data.startswith(b"\x89PNG")  # never a byte past what was declared


async def test_a_body_without_length_is_abandoned_past_the_limit(raw: RawServer) -> None:
    total = 32 * 1024 * 1024
    raw.answers["/endless"] = (
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n",
        total,
    )
    with pytest.raises(MediaRefused, match=r"^photo.png is larger than 64 KB$"):
        await fetch(raw, "/endless")
    assert raw.sent < total // 2


async def test_an_announced_length_over_the_limit_is_refused_unread(raw: RawServer) -> None:
    raw.answers["/big"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", 0)
    with pytest.raises(MediaRefused, match="larger than 64 KB"):
        await fetch(raw, "/big")


async def test_redirects_drop_the_credentials_and_stay_on_allowed_hosts(raw: RawServer) -> None:
    raw.answers["/start"] = (b"HTTP/1.1 302 Found\r\nLocation: /cdn\r\nContent-Length: 0\r\n\r\n", 0)
    raw.answers["/cdn"] = (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 100)
    data = await fetch(
        raw, "/start", redirect_hosts=hosts_of(raw), headers={"authorization": "Basic c2VjcmV0"}
    )
    assert len(data) == 100
    assert "authorization: Basic c2VjcmV0\r\n" in raw.heads[0]
    assert "authorization" not in raw.heads[1].lower()
    with pytest.raises(MediaRefused, match="not on Test's servers"):  # no redirect allowed
        await fetch(raw, "/start")
    raw.answers["/away"] = (
        b"HTTP/1.1 302 Found\r\nLocation: https://evil.example/x\r\nContent-Length: 0\r\n\r\n",
        0,
    )
    with pytest.raises(MediaRefused, match="not on Test's servers"):
        await fetch(raw, "/away", redirect_hosts=hosts_of(raw))


async def test_server_errors_and_a_closed_port_are_unavailable_client_errors_refused(raw: RawServer) -> None:
    raw.answers["/502"] = (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", 0)
    raw.answers["/403"] = (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 0)
    with pytest.raises(MediaUnavailable):
        await fetch(raw, "/502")
    with pytest.raises(MediaRefused, match="could not be fetched from Test"):
        await fetch(raw, "/403")
    # a port bound but not listening refuses connections, and nobody else can take it meanwhile (a
    # closed listener is not enough: a thread blocked in accept() may still take one connection)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{bound.getsockname()[1]}"
        async with new_client() as client:
            with pytest.raises(MediaUnavailable):
                await download(
                    client,
                    closed + "/x",
                    platform="Test",
                    shown="photo.png",
                    max_bytes=LIMIT,
                    hosts=Hosts(origins=origin_of(closed)),
                )


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://files.slack.com/files-pri/T1-F1/a.png", True),
        ("http://files.slack.com/files-pri/T1-F1/a.png", False),  # no plain http to a real host
        ("https://files.slack.com.evil.example/a.png", False),
        ("https://user:pw@files.slack.com/a.png", False),  # credentials in the URL
        ("http://127.0.0.1:8000/files-pri/a.png", True),  # the configured (loopback) origin
        ("http://127.0.0.1:8001/files-pri/a.png", False),  # another port is another host
        ("https://127.0.0.1:8000/a.png", False),
    ],
)
def test_hosts(url: str, allowed: bool) -> None:
    hosts = Hosts(names=frozenset({"files.slack.com"}), origins=origin_of("http://127.0.0.1:8000/api/"))
    assert hosts.allow(httpx.URL(url)) is allowed


def test_plain_http_is_an_origin_only_on_loopback() -> None:
    assert origin_of("http://api.example.com/") == frozenset()
    assert origin_of("https://api.example.com/") == {("https", "api.example.com", 443)}


@pytest.mark.parametrize(
    ("file_path", "expected"),
    [
        ("https://api.telegram.org/file/bot1:T/photos/file_0.jpg", "photos/file_0.jpg"),
        ("https://api.telegram.org/file/bot1:T/../../etc/passwd", None),
        ("https://api.telegram.org/file/bot1:T/photos/%2e%2e/x", None),
        ("/etc/passwd", None),  # PTB keeps a local path as it is: never read from our disk
        ("https://evil.example/file/bot1:T/photos/file_0.jpg", None),
        (None, None),
    ],
)
def test_telegram_file_paths(file_path: str | None, expected: str | None) -> None:
    assert _relative_path(file_path, "https://api.telegram.org/file/bot1:T") == expected


def test_slack_file_references() -> None:
    event = {
        "files": [
            {
                "id": "F1",
                "name": "a.png",
                "mimetype": "image/png",
                "size": 10,
                "url_private": "https://files.slack.com/a",
            },
            {"id": "F2", "mode": "hidden_by_limit"},
            "not a file",
        ]
    }
    refs = media_refs(event)
    assert [(r.ref, r.name, r.media_type, r.size) for r in refs] == [
        ("https://files.slack.com/a", "a.png", "image/png", 10),
        (UNREADABLE_PREFIX + "F2", None, None, None),
    ]

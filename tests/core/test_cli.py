"""The ``threadline`` command as a newcomer uses it, each run a real subprocess on one data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import subprocess_env, threadline_cmd
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.slow


def run(
    tmp_path: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        threadline_cmd(*args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        env=env or subprocess_env(tmp_path),
        check=False,
    )


def no_network_used(tmp_path: Path) -> None:
    log = tmp_path / "netguard.log"
    assert not log.exists() or log.read_text() == "", f"connections outside loopback: {log.read_text()}"


def test_chat_remembers_across_sessions_and_keeps_customers_apart(tmp_path: Path) -> None:
    first = run(tmp_path, "chat", "--as", "telegram:42", stdin="my router keeps dropping the wifi\n")
    assert first.returncode == 0, first.stderr
    assert "Offline mode" in first.stdout

    second = run(tmp_path, "chat", "--as", "telegram:42", stdin="what was the problem?\n")
    assert second.returncode == 0, second.stderr
    assert "router keeps dropping the wifi" in second.stdout

    listing = run(tmp_path, "memory", "list", "telegram:42")
    assert listing.returncode == 0, listing.stderr
    assert "router keeps dropping the wifi" in listing.stdout
    assert "via console from telegram:42" in listing.stdout
    assert "messages: inbox:1" in listing.stdout

    as_json = json.loads(run(tmp_path, "memory", "list", "telegram:42", "--json").stdout)
    router = next(m for m in as_json if "router" in m["text"])
    assert router["channel"] == "console" and router["handle"] == "telegram:42"
    assert router["message_ids"] == ["inbox:1"]

    found = run(tmp_path, "memory", "search", "telegram:42", "wifi trouble", "--json")
    assert "router keeps dropping the wifi" in found.stdout

    stranger = run(tmp_path, "chat", "--as", "telegram:43", stdin="what was the problem?\n")
    assert stranger.returncode == 0, stranger.stderr
    assert "router" not in stranger.stdout
    assert "router" not in run(tmp_path, "memory", "list", "telegram:43").stdout
    no_network_used(tmp_path)


def test_unknown_address_and_bad_address(tmp_path: Path) -> None:
    missing = run(tmp_path, "memory", "list", "telegram:999")
    assert missing.returncode == 1 and "no customer" in missing.stderr
    bad = run(tmp_path, "chat", "--as", "telegram:@ana", stdin="hi\n")
    assert bad.returncode == 2 and "numeric user id" in bad.stderr


def test_partial_channel_credentials_refuse_to_start(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path, THREADLINE_SLACK__BOT_TOKEN="xoxb-secret-token-value")
    result = run(tmp_path, "serve", env=env)
    assert result.returncode == 2
    assert "THREADLINE_SLACK__SIGNING_SECRET" in result.stderr
    assert "xoxb-secret-token-value" not in result.stderr + result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_answers_health_readiness_and_metrics(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        threadline_cmd("serve", "--port", str(port)),
        env=subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        assert json.loads(body) == {"status": "ready"}
        assert _get(f"http://127.0.0.1:{port}/healthz") == (200, '{"status":"ok"}')
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "threadline_inbound_accepted" in metrics
        assert (tmp_path / "data" / "threadline.db").exists()
        # a handle in a query string (the admin API is off here: 403) stays out of the access log
        assert _get(f"http://127.0.0.1:{port}/admin/customers?search=victim%40example.com")[0] == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out
    assert "victim" not in out and "%40" not in out
    assert '"GET /admin/customers?… HTTP/1.1" 403' in out  # the access log is on, without the query
    no_network_used(tmp_path)


def test_killed_mid_answer_every_message_gets_exactly_one_reply(tmp_path: Path) -> None:
    """kill -9 while the LLM holds a call; the next start answers what was left, once."""
    with FakeOpenAI(delay=1.5) as fake:
        env = subprocess_env(
            tmp_path,
            THREADLINE_LLM__API_KEY="sk-test",
            THREADLINE_LLM__BASE_URL=fake.base_url,
            THREADLINE_LLM__MAX_RETRIES="0",
            THREADLINE_MEMORY__WRITE_POLICY="every_turn",
        )
        proc = subprocess.Popen(
            threadline_cmd("chat", "--as", "telegram:42"),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        proc.stdin.write("first question\nsecond question\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        # wait until the second question is being answered (the first reply is out), then kill
        while not any("second question" in str(c["messages"][-1]["content"]) for c in fake.calls):
            assert time.monotonic() < deadline, "the second question never reached the LLM"
            assert proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        killed_out, _ = proc.communicate(timeout=30)

        fake.delay = 0.0
        resumed = run(tmp_path, "chat", "--as", "telegram:42", stdin="third question\n", env=env)
        assert resumed.returncode == 0, resumed.stderr

    replies = killed_out.splitlines() + resumed.stdout.splitlines()
    for question in ("first question", "second question", "third question"):
        assert sum(question in line for line in replies) == 1, (question, replies)
    assert killed_out.splitlines() == ["echo: [via console] first question"]

    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "threadline.db") as conn:
        inbox = conn.execute("SELECT id, status FROM inbox ORDER BY id").fetchall()
        outbox = conn.execute("SELECT inbox_id, status FROM outbox ORDER BY inbox_id").fetchall()
    assert inbox == [(1, "done"), (2, "done"), (3, "done")]
    assert outbox == [(1, "sent"), (2, "sent"), (3, "sent")]
    no_network_used(tmp_path)

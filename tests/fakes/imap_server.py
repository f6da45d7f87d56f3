"""``FakeImapServer``: a small IMAP4rev1 server on 127.0.0.1 (random port) in a background thread.

It speaks the real protocol over a real socket, enough of it for a client that reads a mailbox:
``CAPABILITY``, ``LOGIN`` (the password is checked: ``NO [AUTHENTICATIONFAILED]`` otherwise), ``SELECT``,
``UID SEARCH UNSEEN|ALL``, ``UID FETCH <set> (RFC822.SIZE | BODY.PEEK[] | BODY[] | FLAGS | UID)``
(``BODY[]`` sets ``\\Seen`` as a real server does; ``BODY.PEEK[]`` does not), ``UID STORE <uid>
+FLAGS[.SILENT] (...)``, ``IDLE``/``DONE``, ``NOOP``, ``LOGOUT``; anything else is ``BAD``.

And it is as hostile as a real one: started with ``idle=False`` it offers no IDLE (the client must poll);
``deliver`` while a client idles pushes ``* N EXISTS`` to it (to any other selected client with its next
command's answer, or right after ``+ idling``); ``deliver_during(command, raw)`` lands a mail while
that command runs, so its ``* N EXISTS`` comes with that command's answer (a SEARCH, a FETCH, a STORE)
and never again; ``drop_next(command)`` closes the connection,
without an answer, the next time that command comes (``"FETCH"``, ``"SEARCH"``, ``"IDLE"``...);
``drop_connections()`` drops them all now; started with ``repeat_count=True`` it repeats the unchanged
``* N EXISTS`` with every command's answer (allowed, and some servers do: it announces nothing new);
``fail_store(n)`` answers the next ``n`` STOREs ``NO`` (the flag is not set: the message stays unseen).
``on_store`` is called (in the server's thread) with each UID about to be flagged ``\\Seen``, before the
answer, so a test can look at the store at that very moment. Usable with ``with``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
# a quoted string (with \\ escapes), a parenthesised list (kept whole) or an atom
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|\([^)]*\)|\S+')
_SET_ITEM = re.compile(r"^(\d+|\*)(?::(\d+|\*))?$")


@dataclass
class StoredMail:
    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)


class _Connection:
    def __init__(self, server: FakeImapServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.user: str | None = None
        self.selected = False
        self.idle_tag: str | None = None
        # mail that arrived while this connection was not idling: announced with its next command's
        # answer, before the tagged line, or right after "+ idling" (as real servers do, RFC 3501 §7.3.1)
        self.pending_exists: int | None = None

    def announce(self) -> None:
        if self.pending_exists is not None:
            count, self.pending_exists = self.pending_exists, None
            self.line(f"* {count} EXISTS")
        elif self.server.repeat_count and self.selected:  # as some servers do: nothing new
            self.line(f"* {self.server._status()[0]} EXISTS")

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def line(self, text: str) -> None:
        self.send(text.encode() + b"\r\n")

    def drop(self) -> None:
        transport = self.writer.transport
        transport.abort()  # no answer, no FIN handshake niceties: a dropped connection

    async def serve(self) -> None:
        self.line(f"* OK [CAPABILITY {self.server.capability_line()}] FakeImap ready")
        try:
            while True:
                raw = await self.reader.readline()
                if not raw:
                    return
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if self.idle_tag is not None:
                    if text.upper() == "DONE":
                        tag, self.idle_tag = self.idle_tag, None
                        self.line(f"{tag} OK IDLE terminated")
                    else:
                        self.line("* BAD expected DONE")
                    continue
                if self.handle(text):
                    return
                await self.writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.server._forget(self)
            if not self.writer.is_closing():
                self.writer.close()

    def handle(self, text: str) -> bool:
        """One command line; True when the connection is to end."""
        words = [
            re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else other
            for quoted, other in ((m.group(1), m.group(0)) for m in _TOKEN.finditer(text))
        ]
        if len(words) < 2:
            self.line("* BAD missing command")
            return False
        tag, command, args = words[0], words[1].upper(), words[2:]
        by_uid = command == "UID"
        if by_uid:
            if not args:
                self.line(f"{tag} BAD UID what?")
                return False
            command, args = args[0].upper(), args[1:]
        self.server._count(command)
        if self.server._take_drop(command):
            self.drop()
            return True
        for raw in self.server._take_arrivals(command):  # it lands now: announced with this answer
            self.pending_exists = self.server._store(raw)[1]
        if command not in ("IDLE", "LOGOUT"):
            self.announce()
        if command == "CAPABILITY":
            self.line(f"* CAPABILITY {self.server.capability_line()}")
            self.line(f"{tag} OK CAPABILITY completed")
        elif command == "NOOP":
            self.line(f"{tag} OK NOOP completed")
        elif command == "LOGOUT":
            self.line("* BYE logging out")
            self.line(f"{tag} OK LOGOUT completed")
            return True
        elif command == "LOGIN":
            if len(args) != 2:
                self.line(f"{tag} BAD LOGIN takes two arguments")
            elif (args[0], args[1]) == (self.server.username, self.server.password):
                self.user = args[0]
                self.server.logins += 1
                self.line(f"{tag} OK LOGIN completed")
            else:
                self.server.refused_logins += 1
                self.line(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials")
        elif self.user is None:
            self.line(f"{tag} BAD log in first")
        elif command == "SELECT":
            if not args or args[0] != self.server.mailbox:
                self.line(f"{tag} NO [NONEXISTENT] no such mailbox")
                return False
            self.selected = True
            count, next_uid = self.server._status()
            self.line(r"* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)")
            self.line(f"* {count} EXISTS")
            self.line("* OK [UIDVALIDITY 1] UIDs valid")
            self.line(f"* OK [UIDNEXT {next_uid}] predicted next UID")
            self.line(f"{tag} OK [READ-WRITE] SELECT completed")
        elif not self.selected:
            self.line(f"{tag} BAD select a mailbox first")
        elif command == "IDLE" and self.server.idle:
            self.idle_tag = tag
            self.line("+ idling")
            self.announce()
        elif command == "SEARCH" and by_uid:
            self.search(tag, args)
        elif command == "FETCH" and by_uid:
            self.fetch(tag, args)
        elif command == "STORE" and by_uid:
            self.store(tag, args)
        else:
            self.line(f"{tag} BAD command not supported here")
        return False

    def search(self, tag: str, args: list[str]) -> None:
        if len(args) >= 2 and args[0].upper() == "CHARSET":
            args = args[2:]
        keys = [a.upper() for a in args]
        if keys not in (["UNSEEN"], ["ALL"]):
            self.line(f"{tag} BAD only UNSEEN or ALL")
            return
        with self.server._lock:
            found = [m.uid for m in self.server.mails if keys == ["ALL"] or "\\Seen" not in m.flags]
        self.line("* SEARCH" + "".join(f" {uid}" for uid in found))
        self.line(f"{tag} OK UID SEARCH completed")

    def fetch(self, tag: str, args: list[str]) -> None:
        if len(args) < 2:
            self.line(f"{tag} BAD UID FETCH needs a set and items")
            return
        items = " ".join(args[1:]).strip("()").upper().split()
        known = {"RFC822.SIZE", "BODY.PEEK[]", "BODY[]", "FLAGS", "UID"}
        if not items or any(item not in known for item in items):
            self.line(f"{tag} BAD unsupported fetch items")
            return
        uids = self.server._uids_in(args[0])
        if uids is None:
            self.line(f"{tag} BAD invalid uid set")
            return
        with self.server._lock:
            chosen = [(seq, m) for seq, m in enumerate(self.server.mails, 1) if m.uid in uids]
            for seq, mail in chosen:
                head = f"* {seq} FETCH (UID {mail.uid}"
                if "RFC822.SIZE" in items:
                    head += f" RFC822.SIZE {len(mail.raw)}"
                if "FLAGS" in items:
                    flags = " ".join(sorted(mail.flags))
                    head += f" FLAGS ({flags})"
                if "BODY[]" in items or "BODY.PEEK[]" in items:
                    if "BODY[]" in items:
                        mail.flags.add("\\Seen")
                    self.send(f"{head} BODY[] {{{len(mail.raw)}}}\r\n".encode() + mail.raw + b")\r\n")
                else:
                    self.line(head + ")")
        self.line(f"{tag} OK UID FETCH completed")

    def store(self, tag: str, args: list[str]) -> None:
        if len(args) < 3 or args[1].upper() not in ("+FLAGS", "+FLAGS.SILENT"):
            self.line(f"{tag} BAD only UID STORE <uid> +FLAGS[.SILENT] (...)")
            return
        uids = self.server._uids_in(args[0])
        if uids is None:
            self.line(f"{tag} BAD invalid uid set")
            return
        flags = " ".join(args[2:]).strip("()").split()
        if self.server._take_store_failure():
            self.line(f"{tag} NO [SERVERBUG] the flags could not be stored")
            return
        with self.server._lock:
            chosen = [(seq, m) for seq, m in enumerate(self.server.mails, 1) if m.uid in uids]
        for seq, mail in chosen:
            if "\\Seen" in flags and self.server.on_store is not None:
                self.server.on_store(mail.uid)
            with self.server._lock:
                mail.flags.update(flags)
                current = " ".join(sorted(mail.flags))
            if args[1].upper() == "+FLAGS":
                self.line(f"* {seq} FETCH (UID {mail.uid} FLAGS ({current}))")
        self.line(f"{tag} OK UID STORE completed")


class FakeImapServer:
    def __init__(
        self,
        *,
        username: str = "support@threadline.example",
        password: str,
        mailbox: str = "INBOX",
        idle: bool = True,
        repeat_count: bool = False,
    ) -> None:
        self.username = username
        self.password = password
        self.mailbox = mailbox
        self.idle = idle
        self.repeat_count = repeat_count
        self.mails: list[StoredMail] = []
        self.logins = 0
        self.refused_logins = 0
        self.commands: Counter[str] = Counter()
        self.on_store: Callable[[int], None] | None = None
        self.port = 0
        self._next_uid = 1
        self._drops: list[str] = []
        self._store_failures = 0
        self._arrivals: list[tuple[str, bytes]] = []
        self._lock = threading.RLock()
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # --- what a test does ---------------------------------------------------------------------------

    def deliver(self, raw: bytes) -> int:
        """A new message in the mailbox (unseen); an idling client is told at once. Returns its UID."""
        uid, count = self._store(raw)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._push_exists, count)
        return uid

    def deliver_during(self, command: str, raw: bytes) -> None:
        """``raw`` lands the next time ``command`` comes (``"SEARCH"``, ``"FETCH"``, ``"STORE"``): its
        ``* N EXISTS`` goes out with that command's answer, once (a server says it once, RFC 3501 §7.3.1)."""
        with self._lock:
            self._arrivals.append((command.upper(), raw))

    def seen(self, uid: int) -> bool:
        with self._lock:
            return any(m.uid == uid and "\\Seen" in m.flags for m in self.mails)

    def unseen(self) -> list[int]:
        with self._lock:
            return [m.uid for m in self.mails if "\\Seen" not in m.flags]

    def drop_next(self, command: str, *, count: int = 1) -> None:
        """Close the connection, unanswered, the next ``count`` times ``command`` comes."""
        with self._lock:
            self._drops.extend([command.upper()] * count)

    def drop_connections(self) -> None:
        """Close every client connection now (an idling one too), unanswered."""
        if self._loop is not None:
            for connection in list(self._connections):
                self._loop.call_soon_threadsafe(connection.drop)

    def fail_store(self, count: int = 1) -> None:
        with self._lock:
            self._store_failures += count

    @property
    def connections(self) -> int:
        return len(self._connections)

    # --- inside ---------------------------------------------------------------------------------------

    def capability_line(self) -> str:
        return "IMAP4rev1 AUTH=PLAIN" + (" IDLE" if self.idle else "")

    def _count(self, command: str) -> None:
        with self._lock:
            self.commands[command] += 1

    def _take_drop(self, command: str) -> bool:
        with self._lock:
            if command in self._drops:
                self._drops.remove(command)
                return True
        return False

    def _store(self, raw: bytes) -> tuple[int, int]:
        """Store a message; its UID and the mailbox's new message count."""
        with self._lock:
            uid = self._next_uid
            self._next_uid += 1
            self.mails.append(StoredMail(uid=uid, raw=raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")))
            return uid, len(self.mails)

    def _take_arrivals(self, command: str) -> list[bytes]:
        with self._lock:
            taken = [raw for wanted, raw in self._arrivals if wanted == command]
            self._arrivals = [(wanted, raw) for wanted, raw in self._arrivals if wanted != command]
        return taken

    def _take_store_failure(self) -> bool:
        with self._lock:
            if self._store_failures:
                self._store_failures -= 1
                return True
        return False

    def _status(self) -> tuple[int, int]:
        with self._lock:
            return len(self.mails), self._next_uid

    def _uids_in(self, text: str) -> set[int] | None:
        with self._lock:
            top = self._next_uid - 1
        found: set[int] = set()
        for item in text.split(","):
            match = _SET_ITEM.match(item)
            if match is None:
                return None
            start = top if match.group(1) == "*" else int(match.group(1))
            end_text = match.group(2) or match.group(1)
            end = top if end_text == "*" else int(end_text)
            if start < 1 or end < 1:
                return None
            found.update(range(min(start, end), max(start, end) + 1))
        return found

    def _push_exists(self, count: int) -> None:
        for connection in list(self._connections):
            if connection.idle_tag is not None:
                connection.line(f"* {count} EXISTS")
            elif connection.selected:
                connection.pending_exists = count

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        self._connections.add(connection)
        await connection.serve()

    # --- lifecycle ------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("the fake IMAP server is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind((HOST, 0))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name="FakeImapServer", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the fake IMAP server did not start")
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(asyncio.start_server(self._accept, sock=sock))
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            server.close()
            for connection in list(self._connections):
                connection.drop()
            loop.run_until_complete(server.wait_closed())
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

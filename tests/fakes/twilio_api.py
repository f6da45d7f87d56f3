"""A fake Twilio REST API (the ``api`` domain, version 2010-04-01): a real HTTP server on 127.0.0.1.

::

    with FakeTwilioAPI(account_sid="AC…", auth_token="secret") as fake:
        settings = TwilioSettings(..., api_base_url=fake.url)
        fake.push_rate_limit(retry_after=7)        # the next call answers 429 + Retry-After: 7
        fake.push_error(400, code=21610)           # then a permanent error
        ...
        assert fake.messages[-1]["Body"] == "hello"

Routes, as ``twilio.rest.Client`` 9 calls them:

- ``POST /2010-04-01/Accounts/{sid}/Messages.json``: creates a Message (201, ``sid`` ``SM…``,
  ``status`` ``queued``); a body over 1,600 characters answers 400 / 21617 like Twilio;
- ``GET /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json[?PhoneNumber=…]``: one page of numbers;
- ``POST /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers/{sid}.json``: updates a number.

- ``GET /2010-04-01/Accounts/{sid}/Messages/{MM…}/Media/{ME…}``: an MMS file (``add_media``), answered as
  Twilio does with a 307 redirect to a short-lived URL on its CDN: here ``GET /cdn/{key}`` on the same
  server. The CDN, like S3, refuses a request that carries an ``Authorization`` header (400: "only one auth
  mechanism allowed"; ``cdn_requests`` records whether each had one) and streams the body in 64 KiB chunks,
  counting what it actually sent (``cdn_bytes_sent``). Hostile knobs: ``redirect_media_to(url)`` makes the
  next media answer a redirect to another host; ``add_media(size=N, declare_length=False)`` a body of ``N``
  bytes with no length announced; ``add_media(..., truncate_to=N)`` announces the whole length and hangs up
  after ``N`` bytes; ``push_server_error(502, path=<media path>)`` fails the next media request once.

A message with media (``MediaUrl``, repeated, at most 10, each an http(s) URL) is accepted and then, as
Twilio does, each URL is fetched in the background (GET, no credentials, redirects not followed); every
fetch is recorded in ``media_fetches`` (URL, status, headers, bytes) and ``wait_for_fetches(n)`` waits for
them. ``media_urls`` lists the URLs of each message created.

Every route checks HTTP basic auth (account SID + auth token) and the account in the path: 401 /
20003 or 404 / 20404 otherwise. ``requests`` records every call (method, path, query, form, whether
auth passed, whether the answer was forced); ``messages`` only the messages created.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.server import LoopbackServer

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
MAX_BODY = 1600
_CDN_CHUNK = 64 * 1024

_ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    21211: "The 'To' number is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21602: "Message body is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


def twilio_error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    """Twilio's (legacy) error body: ``{"code", "message", "more_info", "status"}``."""
    return {
        "code": code,
        "message": message or _ERROR_MESSAGES.get(code, f"Error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    authorized: bool
    forced: bool
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFetch:
    """Twilio fetching a message's media URL: what the URL answered."""

    message_sid: str
    url: str
    status: int  # 0: the fetch failed (connection refused, timeout)
    headers: dict[str, str]
    data: bytes = field(repr=False)


@dataclass(slots=True, kw_only=True)
class _Forced:
    status: int
    body: Any
    headers: dict[str, str]
    path: str | None
    after: int  # matching requests still to let through before this answer applies


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeMedia:
    """An MMS file: ``data``, or ``size`` zero bytes made as they are streamed."""

    sid: str
    data: bytes | None
    size: int
    content_type: str
    declare_length: bool
    truncate_to: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CdnRequest:
    path: str
    had_authorization: bool


class FakeTwilioAPI(LoopbackServer):
    """Twilio's REST API on ``127.0.0.1:port``; ``url`` is what ``TwilioSettings.api_base_url`` takes.

    Knobs (thread-safe): ``push(status, body, headers=, path=)`` queues one forced answer (FIFO; with
    ``path`` only a request whose path ends with it takes it), ``push_rate_limit``, ``push_server_error``,
    ``push_error``; ``delay`` holds every answer that many seconds. ``add_number`` adds an
    IncomingPhoneNumber.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.delay = 0.0
        self._lock = threading.Lock()
        self._forced: collections.deque[_Forced] = collections.deque()
        self._requests: list[RecordedRequest] = []
        self._messages: list[dict[str, Any]] = []
        self._numbers: dict[str, dict[str, Any]] = {}
        self._media_urls: list[tuple[str, list[str]]] = []
        self._fetches: list[MediaFetch] = []
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        self._media: dict[str, FakeMedia] = {}
        self._cdn_keys: dict[str, str] = {}  # short-lived CDN key -> media sid
        self._media_redirects: collections.deque[str] = collections.deque()
        self._cdn_requests: list[CdnRequest] = []
        self._cdn_bytes_sent = 0
        base = f"/{API_VERSION}/Accounts/{{account}}"
        self.app = Starlette(
            routes=[
                Route(f"{base}/Messages/{{message}}/Media/{{media}}", self._get_media, methods=["GET"]),
                Route("/cdn/{key}", self._cdn, methods=["GET"]),
                Route(f"{base}/Messages.json", self._create_message, methods=["POST"]),
                Route(f"{base}/IncomingPhoneNumbers.json", self._list_numbers, methods=["GET"]),
                Route(f"{base}/IncomingPhoneNumbers/{{sid}}.json", self._update_number, methods=["POST"]),
            ]
        )

    # ----- knobs and observations ----------------------------------------------------------

    def push(
        self,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        path: str | None = None,
        after: int = 0,
    ) -> None:
        """Queue one forced answer; ``body`` is JSON unless ``str``/``bytes``.

        ``path``: only a request whose path ends with it takes the answer. ``after``: that many
        matching requests are served normally first (fail the second part of a split reply).
        """
        forced = _Forced(status=status, body=body, headers=dict(headers or {}), path=path, after=after)
        with self._lock:
            self._forced.append(forced)

    def push_rate_limit(
        self, retry_after: int | None = 1, *, path: str | None = None, after: int = 0
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.push(429, twilio_error(429, 20429), headers=headers, path=path, after=after)

    def push_server_error(self, status: int = 500, *, path: str | None = None, after: int = 0) -> None:
        self.push(status, twilio_error(status, 20500), path=path, after=after)

    def push_error(self, status: int = 400, *, code: int, path: str | None = None, after: int = 0) -> None:
        self.push(status, twilio_error(status, code), path=path, after=after)

    def add_number(self, phone_number: str, **fields: Any) -> dict[str, Any]:
        """Add an IncomingPhoneNumber to the account; returns its resource JSON."""
        sid = new_sid("PN")
        number = {
            "sid": sid,
            "account_sid": self.account_sid,
            "phone_number": phone_number,
            "friendly_name": phone_number,
            "sms_url": "",
            "sms_method": "POST",
            "status_callback": "",
            "status_callback_method": "POST",
            "voice_url": "",
            "api_version": API_VERSION,
            "capabilities": {"sms": True, "mms": True, "voice": True, "fax": False},
            "date_created": formatdate(usegmt=True),
            "date_updated": formatdate(usegmt=True),
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
            **fields,
        }
        with self._lock:
            self._numbers[sid] = number
        return dict(number)

    def add_media(
        self,
        data: bytes | None = None,
        *,
        content_type: str = "image/jpeg",
        size: int | None = None,
        declare_length: bool = True,
        truncate_to: int | None = None,
    ) -> str:
        """Keep an MMS file; returns its media URL (what Twilio puts in ``MediaUrl{n}``)."""
        sid = new_sid("ME")
        media = FakeMedia(
            sid=sid,
            data=data,
            size=len(data) if data is not None else int(size or 0),
            content_type=content_type,
            declare_length=declare_length,
            truncate_to=truncate_to,
        )
        with self._lock:
            self._media[sid] = media
        return f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/{new_sid('MM')}/Media/{sid}"

    def redirect_media_to(self, url: str) -> None:
        """The next media request is answered with a redirect to ``url`` (another host)."""
        with self._lock:
            self._media_redirects.append(url)

    @property
    def cdn_requests(self) -> list[CdnRequest]:
        with self._lock:
            return list(self._cdn_requests)

    @property
    def cdn_bytes_sent(self) -> int:
        with self._lock:
            return self._cdn_bytes_sent

    def media_requests(self) -> list[RecordedRequest]:
        """The requests that reached the media route (``requests`` filtered)."""
        return [r for r in self.requests if "/Media/" in r.path]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The form of every message created (``To``, ``From``, ``Body``, ``StatusCallback``, ...)."""
        with self._lock:
            return [dict(m["form"]) for m in self._messages]

    @property
    def media_urls(self) -> list[tuple[str, list[str]]]:
        """(message sid, its MediaUrl values) of each message created with media."""
        with self._lock:
            return [(sid, list(urls)) for sid, urls in self._media_urls]

    @property
    def media_fetches(self) -> list[MediaFetch]:
        with self._lock:
            return list(self._fetches)

    def wait_for_fetches(self, count: int, timeout: float = 10.0) -> list[MediaFetch]:
        """The media fetches once there are ``count`` of them (blocking; call it through a thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fetches = self.media_fetches
            if len(fetches) >= count:
                return fetches
            time.sleep(0.02)
        raise TimeoutError(f"{len(self.media_fetches)} media fetches, not {count}")

    @property
    def numbers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(n) for n in self._numbers.values()]

    def reset(self) -> None:
        with self._lock:
            self._forced.clear()
            self._requests.clear()
            self._messages.clear()
            self._numbers.clear()
            self._media_urls.clear()
            self._fetches.clear()
        self.delay = 0.0

    # ----- request plumbing ----------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.account_sid and password == self.auth_token

    async def _begin(self, request: Request) -> tuple[dict[str, str], Response | None]:
        """Record the request; answer it here when it is forced, unauthorised or for another account."""
        body = await request.body()
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        authorized = self._authorized(request)
        with self._lock:
            forced = None
            for item in self._forced:
                if item.path is None or request.url.path.endswith(item.path):
                    if item.after > 0:
                        item.after -= 1
                    else:
                        forced = item
                    break
            if forced is not None:
                self._forced.remove(forced)
            self._requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.url.path,
                    query=dict(request.query_params),
                    form=form,
                    authorized=authorized,
                    forced=forced is not None,
                    headers={k: v for k, v in request.headers.items() if k != "authorization"},
                )
            )
        if self.delay:
            await self._hold(self.delay)
        if forced is not None:
            if isinstance(forced.body, str | bytes):
                return form, Response(forced.body, status_code=forced.status, headers=forced.headers)
            body_json = forced.body if forced.body is not None else twilio_error(forced.status, 20500)
            return form, JSONResponse(body_json, status_code=forced.status, headers=forced.headers)
        if not authorized:
            return form, JSONResponse(twilio_error(401, 20003), status_code=401)
        if request.path_params.get("account") != self.account_sid:
            return form, JSONResponse(twilio_error(404, 20404), status_code=404)
        return form, None

    async def _hold(self, seconds: float) -> None:
        waited = 0.0
        while waited < seconds and not self.closing.is_set():
            await asyncio.sleep(min(0.05, seconds - waited))
            waited += 0.05

    # ----- routes ------------------------------------------------------------------------------

    async def _create_message(self, request: Request) -> Response:
        form, answer = await self._begin(request)
        if answer is not None:
            return answer
        body = form.get("Body", "")
        media = [
            v
            for k, v in parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
            if k == "MediaUrl"
        ]
        if not body and not media:
            return JSONResponse(twilio_error(400, 21602), status_code=400)
        if len(media) > 10 or not all(
            urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname for url in media
        ):
            return JSONResponse(twilio_error(400, 21620, "Invalid media URL(s)"), status_code=400)
        if len(body.encode("utf-16-le")) // 2 > MAX_BODY:
            return JSONResponse(twilio_error(400, 21617), status_code=400)
        if not form.get("To"):
            return JSONResponse(twilio_error(400, 21604, "A 'To' phone number is required."), status_code=400)
        sid = new_sid("SM")
        now = formatdate(usegmt=True)
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
            },
            "to": form.get("To"),
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        resource["num_media"] = str(len(media))
        with self._lock:
            self._messages.append({"sid": sid, "form": form, "resource": resource})
            if media:
                self._media_urls.append((sid, media))
        if media:  # Twilio answers first and fetches the media afterwards
            task = asyncio.get_running_loop().create_task(self._fetch_media(sid, media))
            self._fetch_tasks.add(task)
            task.add_done_callback(self._fetch_tasks.discard)
        return JSONResponse(resource, status_code=201)

    async def _fetch_media(self, sid: str, urls: list[str]) -> None:
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            for url in urls:
                try:
                    response = await client.get(url)
                    fetch = MediaFetch(
                        message_sid=sid,
                        url=url,
                        status=response.status_code,
                        headers={k.lower(): v for k, v in response.headers.items()},
                        data=response.content,
                    )
                except httpx.HTTPError:
                    fetch = MediaFetch(message_sid=sid, url=url, status=0, headers={}, data=b"")
                with self._lock:
                    self._fetches.append(fetch)

    async def _get_media(self, request: Request) -> Response:
        _, answer = await self._begin(request)
        if answer is not None:
            return answer
        with self._lock:
            media = self._media.get(request.path_params["media"])
            foreign = self._media_redirects.popleft() if self._media_redirects else None
            key = uuid.uuid4().hex
            if media is not None:
                self._cdn_keys[key] = media.sid
        if media is None:
            return JSONResponse(twilio_error(404, 20404), status_code=404)
        location = foreign or f"{self.url}/cdn/{key}"
        return Response(status_code=307, headers={"location": location})

    async def _cdn(self, request: Request) -> Response:
        had_authorization = "authorization" in request.headers
        with self._lock:
            self._cdn_requests.append(CdnRequest(path=request.url.path, had_authorization=had_authorization))
            sid = self._cdn_keys.get(request.path_params["key"])
            media = self._media.get(sid) if sid is not None else None
        if had_authorization:  # S3 (and the CDN before it) refuses a second way of signing
            return Response(
                "<Error><Code>InvalidArgument</Code>"
                "<Message>Only one auth mechanism allowed</Message></Error>",
                status_code=400,
                media_type="application/xml",
            )
        if media is None:
            return Response(
                "<Error><Code>AccessDenied</Code></Error>", status_code=403, media_type="application/xml"
            )
        headers = {"content-length": str(media.size)} if media.declare_length else {}
        body = self._cdn_body(request, media)
        return StreamingResponse(body, headers=headers, media_type=media.content_type)

    async def _cdn_body(self, request: Request, media: FakeMedia) -> Any:
        zeros = b"\x00" * _CDN_CHUNK
        end_at = media.size if media.truncate_to is None else min(media.size, media.truncate_to)
        for start in range(0, end_at, _CDN_CHUNK):
            end = min(end_at, start + _CDN_CHUNK)
            chunk = media.data[start:end] if media.data is not None else zeros[: end - start]
            if await request.is_disconnected():  # the client hung up: stop, as a real server does
                return
            yield chunk
            with self._lock:
                self._cdn_bytes_sent += len(chunk)

    async def _list_numbers(self, request: Request) -> Response:
        _, answer = await self._begin(request)
        if answer is not None:
            return answer
        wanted = request.query_params.get("PhoneNumber")
        with self._lock:
            numbers = [
                dict(n) for n in self._numbers.values() if not wanted or wanted in str(n["phone_number"])
            ]
        page_size = int(request.query_params.get("PageSize", "50"))
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers.json"
        uri = f"{path}?PageSize={page_size}&Page=0"
        return JSONResponse(
            {
                "incoming_phone_numbers": numbers[:page_size],
                "end": max(0, min(len(numbers), page_size) - 1),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": page_size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    async def _update_number(self, request: Request) -> Response:
        form, answer = await self._begin(request)
        if answer is not None:
            return answer
        fields = {
            "SmsUrl": "sms_url",
            "SmsMethod": "sms_method",
            "StatusCallback": "status_callback",
            "StatusCallbackMethod": "status_callback_method",
            "VoiceUrl": "voice_url",
            "FriendlyName": "friendly_name",
        }
        with self._lock:
            number = self._numbers.get(request.path_params["sid"])
            if number is None:
                return JSONResponse(twilio_error(404, 20404), status_code=404)
            for form_key, json_key in fields.items():
                if form_key in form:
                    number[json_key] = form[form_key]
            number["date_updated"] = formatdate(usegmt=True)
            return JSONResponse(dict(number))

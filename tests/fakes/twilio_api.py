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
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import LoopbackServer

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
MAX_BODY = 1600

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


@dataclass(slots=True, kw_only=True)
class _Forced:
    status: int
    body: Any
    headers: dict[str, str]
    path: str | None
    after: int  # matching requests still to let through before this answer applies


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
        base = f"/{API_VERSION}/Accounts/{{account}}"
        self.app = Starlette(
            routes=[
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
    def numbers(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(n) for n in self._numbers.values()]

    def reset(self) -> None:
        with self._lock:
            self._forced.clear()
            self._requests.clear()
            self._messages.clear()
            self._numbers.clear()
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
        if not body and not form.get("MediaUrl"):
            return JSONResponse(twilio_error(400, 21602), status_code=400)
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
        with self._lock:
            self._messages.append({"sid": sid, "form": form, "resource": resource})
        return JSONResponse(resource, status_code=201)

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

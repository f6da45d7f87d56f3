"""``TwilioMedia``: the files of an MMS (``MediaUrl{n}``), fetched with the account's credentials.

A media URL (``https://api.twilio.com/2010-04-01/Accounts/AC…/Messages/MM…/Media/ME…``) is asked with
HTTP basic auth (account SID + auth token), as Twilio requires once "Enforce HTTP Auth on Media URLs" is on,
and Twilio answers with a redirect to a short-lived URL on its CDN (``mms.twiliocdn.com``; media from before
that setting lives on ``s3-external-1.amazonaws.com``). So (``channels.media_download``):

- the credentials go only to Twilio's own hosts: ``api.twilio.com``, its media CDN hosts, and the
  configured ``THREADLINE_TWILIO__API_BASE_URL``'s origin (http only on loopback: the tests' fake). A media
  URL on any other host is refused ("... is not on Twilio's servers") and no request is made;
- a redirect is followed only to those hosts (and the legacy S3 host), and never with the credentials;
- the body is capped at the attachment size limit as it streams in.

The signed webhook is what names the URL, so a forged one needs the auth token already; the checks are for
the day a URL is not what it should be (a proxy, a bug, a compromised upstream): credentials stay home.
"""

from __future__ import annotations

import base64

import httpx
from pydantic import SecretStr

from channels.media_download import Hosts, download, host_of, new_client, origin_of, shown_as
from core.messages import FetchedMedia, MediaRef

PLATFORM = "Twilio"
MEDIA_HOSTS = frozenset({"api.twilio.com", "mms.twiliocdn.com", "media.twiliocdn.com"})
LEGACY_CDN_HOSTS = frozenset({"s3-external-1.amazonaws.com"})  # redirect targets only: no credentials


class TwilioMedia:
    """Fetches MMS media for one account (``TwilioSmsAdapter.fetch_media``)."""

    def __init__(self, account_sid: str, auth_token: SecretStr | None, api_base_url: str) -> None:
        self._account_sid = account_sid
        self._auth_token = auth_token
        api_host = host_of(api_base_url)
        names = MEDIA_HOSTS | ({api_host} if api_host else frozenset())
        origins = origin_of(api_base_url)
        self._hosts = Hosts(names=names, origins=origins)
        self._redirect_hosts = Hosts(names=names | LEGACY_CDN_HOSTS, origins=origins)
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"TwilioMedia(account_sid={self._account_sid!r})"

    async def fetch(self, ref: MediaRef, *, max_bytes: int) -> FetchedMedia:
        """The bytes of the media URL ``ref.ref`` (``MediaRefused``, ``MediaUnavailable``: see the module)."""
        if self._client is None:
            self._client = new_client()
        token = self._auth_token.get_secret_value() if self._auth_token is not None else ""
        basic = base64.b64encode(f"{self._account_sid}:{token}".encode()).decode("ascii")
        got = await download(
            self._client,
            ref.ref,
            platform=PLATFORM,
            shown=shown_as(ref.name, ref.media_type),
            max_bytes=max_bytes,
            hosts=self._hosts,
            redirect_hosts=self._redirect_hosts,
            headers={"authorization": f"Basic {basic}"},
        )
        return FetchedMedia(data=got.data, media_type=got.content_type or ref.media_type)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

"""SMS through Twilio Programmable Messaging (the ``twilio`` SDK 9).

Two webhooks reach this adapter, told apart by ``request.path``:

- ``/webhooks/twilio/sms``: an inbound message. Answered at once with an empty TwiML ``<Response/>``
  (the reply goes out later through the REST API). Opt-out keywords are flagged in
  ``control`` (``stop`` / ``start`` / ``help``) for the worker; they are never dropped,
  since Twilio forwards them after handling the opt-out itself;
- ``/webhooks/twilio/status``: a status callback for a message we sent, as a ``StatusUpdate``.

Both are signed the same way (``X-Twilio-Signature``, checked with the SDK's ``RequestValidator``)
over the PUBLIC URL Twilio called: ``public_base_url`` + path + raw query string, never the URL the
server saw (a TLS proxy makes that ``http://`` and another host). Every form parameter is signed,
including the ones Twilio adds without notice, so all of them are kept.

``send`` goes through ``twilio.rest.Client`` with ``AsyncTwilioHttpClient`` and ``create_async``,
split at Twilio's 1,600-character limit (error 21617), preferring paragraph, sentence and word
boundaries. Logs carry message sids and error codes only: never a body or a phone number.

Where things live:

- ``channels.sms.adapter``: ``TwilioSmsAdapter`` (verify, parse both webhooks, send);
- ``channels.sms.form``: the form body as the SDK's validator reads it;
- ``channels.sms.split``: ``split_sms``, a reply in parts at Twilio's limit;
- ``channels.sms.client``: the SDK's REST and HTTP clients, credentials, ``Retry-After``;
- ``channels.sms.media``: ``TwilioMedia``, MMS files (``MediaUrl{n}``) fetched with the account's credentials;
- ``channels.sms.config``: the settings the channel requires and the webhook paths;
- ``channels.sms.number``: ``configure_number``, used by ``threadline setup twilio``.
"""

from __future__ import annotations

from channels.sms.adapter import SIGNATURE_HEADER, TwilioSmsAdapter
from channels.sms.client import DEFAULT_TIMEOUT
from channels.sms.config import INBOUND_PATH, STATUS_PATH
from channels.sms.number import configure_number
from channels.sms.split import SMS_MAX_CHARS, split_sms

__all__ = [
    "DEFAULT_TIMEOUT",
    "INBOUND_PATH",
    "SIGNATURE_HEADER",
    "SMS_MAX_CHARS",
    "STATUS_PATH",
    "TwilioSmsAdapter",
    "configure_number",
    "split_sms",
]

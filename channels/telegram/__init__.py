"""The Telegram channel: Bot API updates in (webhook or long polling), ``sendMessage`` out, through PTB.

Two ways in (``THREADLINE_TELEGRAM__MODE``): ``webhook`` (the default: Telegram calls
``/webhooks/telegram``, checked with the secret token) or ``polling`` (the hub long-polls ``getUpdates``
itself, ``channels.telegram.polling``: no public URL, no secret; the webhook route answers 404 then).
Both hand each update's JSON to ``TelegramAdapter.parse_update``.

- ``verify``: the ``X-Telegram-Bot-Api-Secret-Token`` header must equal the secret given to
  ``setWebhook`` (constant-time compare); missing or wrong → 403, as PTB's own webhook server answers.
- ``parse``: ``telegram.Update.de_json``. Only a new ``message`` from a person (not a bot) in a private
  chat, group or supergroup, carrying text, a caption or a shared contact, is a customer message.
  A ``callback_query`` pressing one of our inline-keyboard buttons (the rating question's) is a message
  too: its text the button's label, ``extras["button"]`` its data, checked by the core. Edits, channel
  posts, inline-mode callbacks, member updates and service messages are noise: no messages, 200. The
  inbox key is ``"<bot id>:<update_id>"``: update ids are per bot and restart at a random value after a
  week without updates.
- ``send``: ``ExtBot.send_message`` as plain text (no parse mode: model output is not markup), with an inline
  keyboard under the last part for ``OutboundMessage.buttons`` (a reply to a press first answers its callback
  query and removes the pressed keyboard, best effort), split to 4,096 UTF-16 code units on paragraph, line or
  word boundaries, paced by ``TelegramPacer`` (30 msg/s overall, 20/min per group, as PTB's
  ``AIORateLimiter``, but shared by every process on the database). A 429 is not waited out here: it becomes
  ``TransientDeliveryError`` with the platform's ``retry_after`` and the worker schedules the retry. An
  answer is waited for 30 s (``ANSWER_TIMEOUT``; PTB's default is 5 s): a message the Bot API delivered
  but answered late would otherwise be retried, and sent twice.
- ``set_webhook``: points the bot's webhook at ``<public base url>/webhooks/telegram``; used by
  ``threadline setup telegram``. In polling mode that command calls ``delete_webhook`` instead
  (``deleteWebhook``, pending updates kept): Telegram answers 409 to ``getUpdates`` while a webhook is set.
- ``start_inbound`` / ``stop_inbound`` (polling mode): ``TelegramPoller`` commits every update of a batch
  before the next ``getUpdates`` confirms it (its ``offset``), so ``kill -9`` loses none and the inbox key
  makes the repeated ones no-ops; in scale mode one process polls, under a named lease.

The bot token is part of every Bot API URL, and PTB puts it in some error texts: every error message
that leaves this package has the token scrubbed, and nothing here logs a message body or a phone number.

Where things live:

- ``channels.telegram.adapter``: ``TelegramAdapter`` (verify, send, the PTB client);
- ``channels.telegram.updates``: an update → the customer message it carries (``parse_update``'s work);
- ``channels.telegram.message``: what is kept of a customer's message (time, media, contact, extras);
- ``channels.telegram.media``: ``TelegramFiles``, a photo or document fetched by ``getFile``, capped;
- ``channels.telegram.split``: ``split_text``, a reply in parts of at most 4,096 UTF-16 code units;
- ``channels.telegram.config``: the bot token and secret from settings, PTB set-up, token scrubbing;
- ``channels.telegram.pacing``: ``TelegramPacer``, the send rate (a PTB ``BaseRateLimiter``);
- ``channels.telegram.webhook``: ``set_webhook``, used by ``threadline setup telegram``;
- ``channels.telegram.polling``: ``TelegramPoller`` (long polling) and ``delete_webhook``.
"""

from __future__ import annotations

from channels.telegram.adapter import SECRET_HEADER, TelegramAdapter
from channels.telegram.polling import TelegramPoller, delete_webhook
from channels.telegram.split import MAX_TEXT_LENGTH, split_text
from channels.telegram.updates import CONTACT_TEXT
from channels.telegram.webhook import WEBHOOK_PATH, set_webhook

__all__ = [
    "CONTACT_TEXT",
    "MAX_TEXT_LENGTH",
    "SECRET_HEADER",
    "WEBHOOK_PATH",
    "TelegramAdapter",
    "TelegramPoller",
    "delete_webhook",
    "set_webhook",
    "split_text",
]

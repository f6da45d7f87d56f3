"""Logging set-up. Threadline logs ids only: never a message body, phone number, email or secret."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Third-party loggers that print request or memory content at INFO/DEBUG.
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "httpx2",  # the openai SDK's own fork of httpx logs every request at INFO
    "httpcore2",
    "openai",
    "mem0",
    "aiosqlite",
    "asyncio",
    "telegram",
    "slack_sdk",
    "twilio",
    "aiosmtpd",
    "mail.log",
)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

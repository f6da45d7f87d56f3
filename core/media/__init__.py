"""Files customers send and people send back: fetched once, checked, stored once, described to the agent.

- ``core.media.store``: ``FileMediaStore``, content-addressed bytes under ``<data dir>/media`` (0700/0600,
  written whole then renamed, so a crash leaves no half file; the same file sent twice is kept once).
- ``core.media.pg_store``: ``PostgresMediaStore``, the same in PostgreSQL (scale mode: every process sees
  the bytes), and ``media_store``, which picks one of the two (``core.ports.MediaStore``) for the database.
- ``core.media.check``: what a file is (its bytes sniffed, never the declared type), whether it is allowed
  (``THREADLINE_ATTACHMENTS__ALLOWED_TYPES``, ``__MAX_BYTES``) and a safe name (no path, no control
  characters), or ``MediaRefused`` with the reason the customer is told.
- ``core.media.intake``: ``MediaIntake``, run by the worker before a message is answered: every file of
  the inbox row is taken from the store (bytes that came with the message, an email's parts, were kept
  at accept time) or fetched through its channel (``core.ports.MediaFetcher``: Telegram ``getFile``, a
  Twilio media URL with the account's credentials, a Slack ``url_private`` with the bot token), checked,
  stored, and recorded in ``attachments`` (one row per file, refused ones with their reason). Idempotent:
  a retried turn finds the rows already there.
- ``core.media.pdf_text``: a PDF's text for the agent (first pages, ~4,000 characters, a deadline, one
  dedicated thread), kept redacted in ``attachments.text``.
- ``core.media.unreferenced``: after forget or retention deleted rows, the files no row holds any more.

The agent is told what was sent (name, type, size; ``core.media.describe``); memory records it with the
customer's turn. Nothing here logs a file name, a URL or bytes: ids, sizes and types only.
"""

"""Screenshots of the operator console with demo data, for the docs.

    .venv/bin/python -m scripts.screenshots            # or: .venv/bin/python scripts/screenshots.py
    .venv/bin/python -m scripts.screenshots --out /tmp/shots

Starts the hub in a temporary folder with Telegram and SMS pointed at the test suite's fake platforms and
the fake LLM (``tests/fakes``; nothing leaves this machine: the loopback-only network guard is on), writes
demo data through the platforms' signed webhooks (a few customers on both channels, one waiting handoff,
one owned by an operator, a merge suggestion, a reply the platform refused for good), signs in as an admin
in chromium and saves PNGs to ``docs/screenshots/``: ``inbox.png``, ``overview.png`` and
``dead-letters.png`` (1280 x 800), ``customer.png`` (owned, with an operator's reply) and
``customer-waiting.png`` (a waiting handoff and a merge suggestion), 1280 wide and as long as the page, and
``inbox-phone.png`` (390 x 844). Needs the test tools (``scripts/setup.sh``) and chromium
(``THREADLINE_CHROMIUM`` or ``/usr/bin/chromium``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: scripts/ is on the path, not the checkout
    sys.path.insert(0, str(ROOT))

from tests.browser.support import (  # noqa: E402 - after the path is set
    ADMIN,
    ADMIN_PASSWORD,
    CHROMIUM_ARGS,
    Desk,
    bot_reply,
    find_chromium,
    new_page,
    running_desk,
    sign_in,
)
from tests.netguard import netguard  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}

ANA, CARLA = 424242, 515151  # Telegram users
ANA_PHONE, BRUNO_PHONE, DAN_PHONE = "+15551230000", "+15551230001", "+15551230002"


FACTS = {  # what the demo's model "extracts" from a customer's words, for the memories panel
    "dropping the wifi": "Router drops the wifi, mostly in the evenings",
    "charged twice": "Charged twice for the March invoice",
    "reset my password": "Asked how to reset their password",
}


def demo_model(request: dict[str, Any]) -> str:
    """The fake LLM of the demo: a fact per topic for Mem0's extraction, else the tests' bot answer."""
    if (request.get("response_format") or {}).get("type") != "json_object":
        return bot_reply(request)
    users = [m for m in request.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    said = str(users[-1].get("content", "")).lower() if users else ""
    return json.dumps({"memory": [{"text": fact} for topic, fact in FACTS.items() if topic in said]})


async def demo_data(desk: Desk) -> dict[str, str]:
    """Customers on Telegram and SMS, one waiting handoff, one owned, a merge suggestion, a dead letter.
    Returns the customer ids by first name."""
    desk.llm.responder = demo_model
    # Ana on Telegram: the bot answers, then she asks for a person (waiting)
    await desk.handled("telegram", await desk.telegram_message(ANA, "my router keeps dropping the wifi"))
    await desk.handled("telegram", await desk.telegram_message(ANA, "can I talk to a person please?"))
    # ... and by SMS; her shared Telegram contact names the same phone: a merge suggestion
    await desk.handled("sms", await desk.sms(ANA_PHONE, "Hi, it's Ana. The wifi dropped again tonight."))
    await desk.handled("telegram", await desk.telegram_contact(ANA, ANA_PHONE.lstrip("+")))

    # Bruno by SMS: charged twice; an operator takes over and answers (owned)
    await desk.handled("sms", await desk.sms(BRUNO_PHONE, "I was charged twice for my March invoice"))
    bruno = await desk.customer_of(f"sms:{BRUNO_PHONE}")
    services: Any = desk.served.app.state.admin
    await services.handoffs.take(bruno, operator=ADMIN, note="double charge")
    await services.handoffs.reply(
        bruno, text="Sorry about that, Bruno. Your refund is on its way.", operator=ADMIN
    )
    await desk.handled("sms", await desk.sms(BRUNO_PHONE, "Thank you! How long will it take?"))

    # Carla on Telegram has blocked the bot: the answer fails for good (a dead letter)
    desk.telegram.push_blocked()
    await desk.handled(
        "telegram", await desk.telegram_message(CARLA, "what are your opening hours?", name="Carla")
    )

    # Dan by SMS: a plain question the bot answers
    await desk.handled("sms", await desk.sms(DAN_PHONE, "How do I reset my password?"))
    left = await desk.served.hub.wait_idle(timeout=30)
    if any(left.values()):
        raise RuntimeError(f"the hub is still busy with the demo data: {left}")
    return {
        "ana": await desk.customer_of(f"telegram:{ANA}"),
        "bruno": bruno,
        "carla": await desk.customer_of(f"telegram:{CARLA}"),
        "dan": await desk.customer_of(f"sms:{DAN_PHONE}"),
    }


async def settled(page: Any) -> None:
    """Wait until the page has loaded and htmx has nothing in flight."""
    await page.wait_for_load_state("networkidle")
    await page.wait_for_function("() => !document.querySelector('.htmx-request')")


async def shoot(page: Any, url: str, path: Path, *, full_page: bool = False) -> None:
    await page.goto(url)
    await settled(page)
    await page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshots: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


async def take(out: Path, executable: str, folder: Path) -> None:
    """Serve the demo hub with its data under ``folder`` and save the screenshots into ``out``."""
    from playwright.async_api import async_playwright

    async with running_desk(folder / "data") as desk, async_playwright() as playwright:
        customers = await demo_data(desk)
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            laptop = await new_page(browser, **LAPTOP)
            await sign_in(laptop, desk, ADMIN, ADMIN_PASSWORD)
            console = f"{desk.url}/console"
            await shoot(laptop, f"{console}/", out / "inbox.png")
            await shoot(
                laptop, f"{console}/customers/{customers['bruno']}", out / "customer.png", full_page=True
            )
            await shoot(
                laptop,
                f"{console}/customers/{customers['ana']}",
                out / "customer-waiting.png",
                full_page=True,
            )
            await shoot(laptop, f"{console}/overview", out / "overview.png")
            await shoot(laptop, f"{console}/dead-letters", out / "dead-letters.png")
            phone = await new_page(browser, **PHONE)
            await sign_in(phone, desk, ADMIN, ADMIN_PASSWORD)
            await shoot(phone, f"{console}/", out / "inbox-phone.png")
        finally:
            await browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of the operator console with demo data.")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the PNGs (default {OUT})")
    args = parser.parse_args(argv)
    executable, reason = find_chromium()  # reads THREADLINE_CHROMIUM before the settings are cleared
    if executable is None:
        print(f"screenshots: {reason}", file=sys.stderr)
        return 2
    for name in list(os.environ):  # the demo hub is configured here, not by the developer's settings
        if name.startswith("THREADLINE_") or name in ("OPENAI_API_KEY", "MEM0_API_KEY", "OPENAI_BASE_URL"):
            del os.environ[name]
    netguard.install()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="threadline-screenshots-") as folder:
        os.chdir(folder)  # no .env of the checkout is read
        asyncio.run(take(out, executable, Path(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

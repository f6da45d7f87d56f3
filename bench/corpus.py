"""Synthetic customer-support text, deterministic from a seed: messages, remembered facts, questions, replies.

Sentences are built from templates over products, problems, places and numbers, so that thousands of
distinct texts exist and every customer reads differently; the same seed gives the same texts.
"""

from __future__ import annotations

import random

PRODUCTS = (
    "router",
    "modem",
    "mesh extender",
    "fibre box",
    "set-top box",
    "smart thermostat",
    "phone plan",
    "prepaid SIM",
    "laptop",
    "tablet",
    "smartwatch",
    "printer",
    "security camera",
    "doorbell",
    "streaming stick",
    "soundbar",
    "e-bike",
    "washing machine",
    "dishwasher",
    "coffee machine",
    "electricity contract",
    "gas contract",
    "home insurance",
    "car insurance",
    "gym membership",
    "newsletter subscription",
    "cloud storage plan",
    "VPN subscription",
    "music subscription",
    "game console",
)
PROBLEMS = (
    "keeps dropping the connection",
    "was charged twice",
    "arrived damaged",
    "never arrived",
    "stopped working after the update",
    "makes a loud noise",
    "shows error code E{num}",
    "is much slower than advertised",
    "cannot be activated",
    "was cancelled without notice",
    "billed at the wrong rate",
    "reboots every few hours",
    "battery drains overnight",
    "lost all my settings",
    "will not pair with my phone",
    "has a cracked screen",
    "got the wrong size",
    "keeps asking for my password",
    "overheats",
    "has no signal in the {place}",
)
PLACES = ("kitchen", "bedroom", "garage", "office", "basement", "garden", "living room", "attic")
WANTS = (
    "Can you refund me?",
    "Please send a technician.",
    "I want a replacement.",
    "How do I fix this?",
    "Can someone call me back?",
    "I would like to cancel.",
    "Is there an outage in my area?",
    "What are my options?",
    "Please escalate this.",
    "Can you check my account?",
)
FACT_TEMPLATES = (
    "Customer's {product} {problem}.",
    "Customer asked for a refund of {amount} EUR for the {product}.",
    "Customer prefers to be contacted by {contact} in the {daypart}.",
    "Customer's order #{order} for a {product} is delayed.",
    "Customer lives in {city} and has the {product} in the {place}.",
    "Customer was promised a callback about the {product} on {day}.",
    "Customer's account number ends in {num}.",
    "Customer is on the {tier} tier and pays {amount} EUR a month for the {product}.",
    "Customer's technician visit for the {product} is booked for {day}.",
    "Customer said the {product} {problem} and a reboot did not help.",
)
QUESTION_TEMPLATES = (
    "what was wrong with my {product}?",
    "did you refund me for the {product}?",
    "when is the technician coming?",
    "what did I tell you about my {product}?",
    "is my order #{order} on its way?",
    "how much do I pay a month?",
    "can you remind me what we agreed about the {product}?",
    "why was I charged {amount} EUR?",
)
CITIES = ("Lisbon", "Porto", "Madrid", "Berlin", "Hamburg", "Lyon", "Milan", "Dublin", "Utrecht", "Gdansk")
CONTACTS = ("email", "SMS", "phone", "Telegram", "Slack")
DAYPARTS = ("morning", "afternoon", "evening")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
TIERS = ("basic", "plus", "premium", "business")


class Corpus:
    """A seeded source of support texts."""

    def __init__(self, seed: int = 7) -> None:
        self._rng = random.Random(seed)

    def _fill(self, template: str) -> str:
        rng = self._rng
        return template.format(
            product=rng.choice(PRODUCTS),
            problem=rng.choice(PROBLEMS).format(num=rng.randint(10, 99), place=rng.choice(PLACES)),
            place=rng.choice(PLACES),
            amount=rng.randint(5, 400),
            order=rng.randint(100000, 999999),
            contact=rng.choice(CONTACTS),
            daypart=rng.choice(DAYPARTS),
            city=rng.choice(CITIES),
            day=rng.choice(DAYS),
            num=rng.randint(1000, 9999),
            tier=rng.choice(TIERS),
        )

    def message(self) -> str:
        """A customer's message: the problem, some detail, what they want."""
        rng = self._rng
        problem = self._fill(f"My {{product}} {rng.choice(PROBLEMS)}.")
        detail = _first_person(self._fill(rng.choice(FACT_TEMPLATES)))
        return f"{problem} {detail} {rng.choice(WANTS)}"

    def fact(self) -> str:
        """A remembered fact about a customer, as Mem0 would store one."""
        return self._fill(self._rng.choice(FACT_TEMPLATES))

    def question(self) -> str:
        """A follow-up question that memory should help with."""
        return self._fill(self._rng.choice(QUESTION_TEMPLATES))

    def facts(self, count: int) -> list[str]:
        """``count`` distinct facts (bounded: gives up on distinctness after ``50 * count`` draws)."""
        seen: dict[str, None] = {}
        for _ in range(50 * count):
            if len(seen) >= count:
                break
            seen.setdefault(self.fact(), None)
        return list(seen)


_FIRST_PERSON = (
    ("Customer's", "My"),
    ("Customer prefers", "I prefer"),
    ("Customer is", "I am"),
    ("Customer lives", "I live"),
    ("Customer asked", "I asked"),
    ("Customer was", "I was"),
    ("Customer said", "I said"),
    (" pays ", " pay "),
    (" has the ", " have the "),
)


def _first_person(fact: str) -> str:
    for third, first in _FIRST_PERSON:
        fact = fact.replace(third, first)
    return fact


def reply_to(text: str) -> str:
    """A plausible support reply (about 200-300 characters) to ``text``; deterministic."""
    words = " ".join(text.split()[:8]).rstrip(".,!?")
    rng = random.Random(text)
    steps = rng.choice(
        (
            "I have opened a ticket and a specialist will look at it within one business day.",
            "I have checked your account and can see the issue on our side; a fix is scheduled.",
            "Please restart the device once more; if it happens again, reply here and I will escalate.",
            "I have asked our billing team to review the charge and will update you by email.",
        )
    )
    return (
        f'Thanks for getting in touch about "{words}". {steps} Is there anything else I can help with today?'
    )

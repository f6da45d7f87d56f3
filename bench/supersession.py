"""Updated facts: is the current value recalled ahead of the old one? (issue 15, ``core.memory.supersession``)

Generated cases, each one customer of its own in one local memory store (the product's ``LocalMemory``,
stored as the offline hub stores turns: the customer's words as they are): an old statement of a fact
(address, phone, email or plan), a few unrelated memories, then a newer statement of the same fact in other
words, and later a question about it. Recall goes through the agent's own path (``Agent.recall``: the
memory block budget, the filters it applies). A case passes when the new value is recalled and the old one
is either not recalled or ranked below it.

Both sides are measured in one run on the same cases: ``current`` (the hub: the writer marks the old
statement superseded after each write) and ``baseline`` (the same store without the marking, i.e. ranking
alone). Phrasings are drawn from several templates per fact, and some cases say it in words the marking's
patterns were not written for, so the figure is not a tautology.

``python -m bench.supersession --cases 240 --seed 7``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import RESULTS_DIR, Run
from bench.machine import print_machine
from core.agent.agent import Agent, AgentTurn
from core.memory.local import LocalMemory
from core.messages import Assurance, ChatMessage, Provenance
from core.settings import LLMSettings, MemorySettings

STREETS = ["Elm Street", "Oak Avenue", "Harbour Road", "Mill Lane", "Station Road", "Kingsway", "Rue Verte"]
CITIES = ["Leeds", "Porto", "Austin", "Lyon", "Graz", "Dublin", "Malmo", "Turin", "Ghent", "Denver"]
PLANS = ["Basic", "Plus", "Pro", "Family", "Unlimited", "Student", "Business", "Starter"]
NAMES = ["ana", "li", "omar", "sven", "maya", "joao", "kim", "lena", "raj", "zoe"]
DOMAINS = ["mail.example", "post.example", "inbox.example", "web.example"]

OLD = {
    "address": ["My address is {old}.", "I live at {old}.", "Please ship my orders to {old}."],
    "phone": ["My phone number is {old}.", "You can call me on {old}.", "My mobile is {old}."],
    "email": ["My email is {old}.", "My email address is {old}.", "Email me at {old}."],
    "plan": ["I'm on the {old} plan.", "My plan is {old}.", "I signed up for the {old} plan."],
}
NEW = {
    "address": [
        "I moved to {new}.",
        "My new address is {new}.",
        "We have relocated to {new}.",
        "My address has changed, it is now {new}.",
        "Please ship to {new} from now on.",  # not a pattern of the marking: ranking alone must carry it
    ],
    "phone": [
        "My new phone number is {new}.",
        "I have a new number: {new}.",
        "Call me on {new} from now on.",
        "My phone number changed to {new}.",
        "Use {new} to reach me now.",  # not a pattern of the marking
    ],
    "email": [
        "My new email is {new}.",
        "My email address has changed to {new}.",
        "Please email me at {new} instead.",
        "New email address: {new}.",
        "Write to {new} from now on.",  # not a pattern of the marking
    ],
    "plan": [
        "I switched to the {new} plan.",
        "I upgraded to the {new} plan.",
        "I'm now on the {new} plan.",
        "I changed my plan to {new}.",
        "Downgraded to {new} last week.",  # not a pattern of the marking (no "to" after a plan word)
    ],
}
QUESTIONS = {
    "address": [
        "What address do you have for me?",
        "Where will my order be delivered?",
        "Is my address right?",
    ],
    "phone": ["Which phone number do you have for me?", "What number will you call me on?"],
    "email": ["Which email address do you have on file?", "Where do you send my invoices by email?"],
    "plan": ["Which plan am I on?", "What is my current plan?", "How much does my plan cost?"],
}
FILLER = [
    "My router keeps dropping the wifi in the evening.",
    "I was charged twice for the March invoice.",
    "The parcel arrived with a broken lid.",
    "I prefer to be contacted in the morning.",
    "My son also uses the account.",
    "The app crashes when I open the settings.",
    "I asked for a refund of the late fee.",
    "The technician visit was on a Tuesday.",
]


@dataclass(frozen=True, slots=True)
class Case:
    slot: str
    old: str
    new: str
    memories: tuple[str, ...]  # in the order they were said
    question: str


def _value(slot: str, rng: random.Random) -> str:
    if slot == "address":
        return f"{rng.randint(2, 240)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    if slot == "phone":
        return f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}"
    if slot == "email":
        return f"{rng.choice(NAMES)}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
    return rng.choice(PLANS)


def generate(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    slots = list(OLD)
    cases = []
    for number in range(count):
        slot = slots[number % len(slots)]
        old = _value(slot, rng)
        new = _value(slot, rng)
        while new == old:
            new = _value(slot, rng)
        said = [rng.choice(OLD[slot]).format(old=old)]
        said += rng.sample(FILLER, rng.randint(1, 4))
        said.append(rng.choice(NEW[slot]).format(new=new))
        said += rng.sample(FILLER, rng.randint(0, 2))
        cases.append(Case(slot, old, new, tuple(said), rng.choice(QUESTIONS[slot])))
    return cases


async def _measure(memory: LocalMemory, cases: list[Case], *, mark: bool) -> dict[str, Any]:
    agent = Agent(memory=memory, conversation=None, model=None, settings=MemorySettings())  # type: ignore[arg-type]
    passed: dict[str, list[bool]] = {}
    for number, case in enumerate(cases):
        customer = f"cus_{'m' if mark else 'b'}{number:05d}"
        for turn, text in enumerate(case.memories):
            provenance = Provenance(
                channel="sms", handle="sms:+15550000000", message_ids=(f"inbox:{turn}",), category="profile"
            )
            ids = await memory.remember(
                customer, [ChatMessage(role="user", content=text)], provenance=provenance, infer=False
            )
            if mark:
                await memory.supersede(customer, ids)
        turn = AgentTurn(
            customer_id=customer,
            assurance=Assurance.PLATFORM_ATTESTED,
            sender="sms:+15550000000",
            channel="sms",
            text=case.question,
            inbox_id=1,
        )
        recalled = [m.text for m in await agent.recall(turn)]
        new_at = next((i for i, text in enumerate(recalled) if case.new in text), None)
        old_at = next((i for i, text in enumerate(recalled) if case.old in text), None)
        ok = new_at is not None and (old_at is None or new_at < old_at)
        passed.setdefault(case.slot, []).append(ok)
    every = [ok for results in passed.values() for ok in results]
    return {
        "score": sum(every) / len(every),
        "cases": len(every),
        "by_slot": {slot: round(sum(r) / len(r), 4) for slot, r in sorted(passed.items())},
    }


async def run(count: int, seed: int, data_dir: Path, *, baseline: bool = True) -> dict[str, Any]:
    """Both sides on the same ``count`` cases (``baseline=False``: the hub's side only)."""
    cases = generate(count, seed)
    memory = LocalMemory(data_dir=data_dir, llm=LLMSettings())
    try:
        started = time.perf_counter()
        results = {"current": await _measure(memory, cases, mark=True)}
        if baseline:
            results["baseline"] = await _measure(memory, cases, mark=False)
        return {**results, "seconds": round(time.perf_counter() - started, 1)}
    finally:
        await memory.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="the results folder")
    args = parser.parse_args()
    machine = print_machine()
    with TemporaryDirectory() as folder:
        results = asyncio.run(run(args.cases, args.seed, Path(folder)))
    bench = Run("supersession", machine, {"cases": args.cases, "seed": args.seed})
    bench.note(
        "current: the hub (older statements marked superseded); baseline: the same store, ranking alone"
    )
    path = bench.write(results, args.out)
    for side in ("current", "baseline"):
        found = results[side]
        print(f"{side:9s} {found['score']:.3f} of {found['cases']} cases  {found['by_slot']}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()

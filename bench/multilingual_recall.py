"""Recall in the customer's language: does a question find the memory that names the same thing in another
form ("Rechnung" / "Rechnungen", "bolletta" / "bollette", "счёт" / "счета")? (``core.memory.lexemes``)

Generated cases in six languages (German, French, Spanish, Italian, Dutch, Russian). Each customer of one
local memory store (the product's ``LocalMemory``, the offline hub's write path: the customer's words as
they are) said, on days of their own, one line about each of ten support things (invoices, orders,
refunds, ...) in its plural or another inflected form, between lines that name none; then they ask about
each thing in its singular, in a sentence and in one word ("short": "pedido?", too short for the model to
tell its language). The memory of that thing must come first (``hit@1``) or among the first three
(``hit@3``) of ``LocalMemory.recall``: the lines differ only in the thing they name, so the keyword side
decides, with the English MiniLM's cosine beside it.

Both sides are measured in one run on the same cases: ``product`` (each text stemmed in its own language)
and ``english_only`` (every text and query stemmed as English, the rule before 2026-12-07), each in a store
of its own.

``python -m bench.multilingual_recall --customers 4 --seed 3``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import RESULTS_DIR, Run
from bench.machine import print_machine
from core.memory import lexemes
from core.memory.local import LocalMemory
from core.messages import ChatMessage, Provenance
from core.settings import LLMSettings


@dataclass(frozen=True, slots=True)
class Language:
    things: tuple[tuple[str, str], ...]  # (asked: singular, said: plural or another form)
    said: tuple[str, ...]  # templates of a line naming a thing: {said}, {month}
    asked: tuple[str, ...]  # templates of the question: {asked}
    filler: tuple[str, ...]  # lines that name no thing
    months: tuple[str, ...]


LANGUAGES: dict[str, Language] = {
    "de": Language(
        things=(
            ("Rechnung", "Rechnungen"),
            ("Bestellung", "Bestellungen"),
            ("Lieferung", "Lieferungen"),
            ("Gutschrift", "Gutschriften"),
            ("Kündigung", "Kündigungen"),
            ("Abbuchung", "Abbuchungen"),
            ("Rücksendung", "Rücksendungen"),
            ("Zahlung", "Zahlungen"),
            ("Mahnung", "Mahnungen"),
            ("Buchung", "Buchungen"),
        ),
        said=(
            "Meine {said} vom {month} stimmen nicht.",
            "Ich warte immer noch auf die {said} vom {month}.",
            "Bei den {said} im {month} ist etwas schiefgelaufen.",
            "Zwei {said} wurden im {month} doppelt erfasst.",
        ),
        asked=(
            "Kurze Frage zu meiner {asked}: wie ist der Stand?",
            "Was ist eigentlich mit der {asked} passiert?",
            "Können Sie die {asked} noch einmal prüfen?",
        ),
        filler=(
            "Hallo, ich bin es wieder.",
            "Danke für die schnelle Antwort!",
            "Ich bin morgen den ganzen Tag erreichbar.",
            "Das war sehr hilfreich, vielen Dank.",
            "Am besten schreiben Sie mir abends.",
            "Bis bald und schönes Wochenende!",
        ),
        months=("Januar", "März", "Mai", "Juli", "Oktober"),
    ),
    "fr": Language(
        things=(
            ("facture", "factures"),
            ("commande", "commandes"),
            ("livraison", "livraisons"),
            ("remboursement", "remboursements"),
            ("abonnement", "abonnements"),
            ("prélèvement", "prélèvements"),
            ("réclamation", "réclamations"),
            ("paiement", "paiements"),
            ("échange", "échanges"),
            ("avoir", "avoirs"),
        ),
        said=(
            "Mes {said} de {month} ne sont pas correctes.",
            "J'attends toujours les {said} de {month}.",
            "Il y a eu un souci avec les {said} en {month}.",
            "Deux {said} ont été comptées deux fois en {month}.",
        ),
        asked=(
            "Petite question au sujet de {asked} : où en est-on ?",
            "Qu'est-il arrivé à {asked} au juste ?",
            "Pouvez-vous vérifier {asked} encore une fois ?",
        ),
        filler=(
            "Bonjour, c'est encore moi.",
            "Merci pour la réponse rapide !",
            "Je suis joignable toute la journée demain.",
            "C'était très utile, merci beaucoup.",
            "Le mieux est de m'écrire le soir.",
            "À bientôt et bon week-end !",
        ),
        months=("janvier", "mars", "mai", "juillet", "octobre"),
    ),
    "es": Language(
        things=(
            ("factura", "facturas"),
            ("pedido", "pedidos"),
            ("envío", "envíos"),
            ("reembolso", "reembolsos"),
            ("suscripción", "suscripciones"),
            ("devolución", "devoluciones"),
            ("cobro", "cobros"),
            ("pago", "pagos"),
            ("reclamación", "reclamaciones"),
            ("cargo", "cargos"),
        ),
        said=(
            "Mis {said} de {month} no están bien.",
            "Sigo esperando los {said} de {month}.",
            "Hubo un problema con los {said} en {month}.",
            "Se registraron dos {said} por duplicado en {month}.",
        ),
        asked=(
            "Una pregunta rápida sobre {asked}: ¿cómo va?",
            "¿Qué pasó al final con {asked}?",
            "¿Pueden revisar {asked} otra vez?",
        ),
        filler=(
            "Hola, soy yo otra vez.",
            "¡Gracias por la respuesta tan rápida!",
            "Mañana estoy disponible todo el día.",
            "Eso fue muy útil, muchas gracias.",
            "Mejor escríbanme por la tarde.",
            "¡Hasta pronto y buen fin de semana!",
        ),
        months=("enero", "marzo", "mayo", "julio", "octubre"),
    ),
    "it": Language(
        things=(
            ("bolletta", "bollette"),
            ("fattura", "fatture"),
            ("ordine", "ordini"),
            ("spedizione", "spedizioni"),
            ("rimborso", "rimborsi"),
            ("abbonamento", "abbonamenti"),
            ("pacco", "pacchi"),
            ("pagamento", "pagamenti"),
            ("addebito", "addebiti"),
            ("reclamo", "reclami"),
        ),
        said=(
            "Le mie {said} di {month} non sono giuste.",
            "Sto ancora aspettando le {said} di {month}.",
            "C'è stato un problema con le {said} a {month}.",
            "Due {said} sono state registrate due volte a {month}.",
        ),
        asked=(
            "Una domanda veloce su {asked}: a che punto siamo?",
            "Che cosa è successo alla fine con {asked}?",
            "Potete controllare {asked} ancora una volta?",
        ),
        filler=(
            "Ciao, sono di nuovo io.",
            "Grazie per la risposta veloce!",
            "Domani sono raggiungibile tutto il giorno.",
            "È stato molto utile, grazie mille.",
            "Meglio scrivermi la sera.",
            "A presto e buon fine settimana!",
        ),
        months=("gennaio", "marzo", "maggio", "luglio", "ottobre"),
    ),
    "nl": Language(
        things=(
            ("factuur", "facturen"),
            ("bestelling", "bestellingen"),
            ("levering", "leveringen"),
            ("terugbetaling", "terugbetalingen"),
            ("abonnement", "abonnementen"),
            ("pakket", "pakketten"),
            ("betaling", "betalingen"),
            ("afschrijving", "afschrijvingen"),
            ("klacht", "klachten"),
            ("retourzending", "retourzendingen"),
        ),
        said=(
            "Mijn {said} van {month} kloppen niet.",
            "Ik wacht nog steeds op de {said} van {month}.",
            "Er ging iets mis met de {said} in {month}.",
            "Twee {said} zijn in {month} dubbel geboekt.",
        ),
        asked=(
            "Korte vraag over mijn {asked}: hoe staat het ervoor?",
            "Wat is er eigenlijk met de {asked} gebeurd?",
            "Kunt u de {asked} nog een keer controleren?",
        ),
        filler=(
            "Hallo, ik ben het weer.",
            "Bedankt voor het snelle antwoord!",
            "Ik ben morgen de hele dag bereikbaar.",
            "Dat was erg nuttig, hartelijk dank.",
            "Schrijf me het liefst 's avonds.",
            "Tot snel en een fijn weekend!",
        ),
        months=("januari", "maart", "mei", "juli", "oktober"),
    ),
    "ru": Language(
        things=(
            ("счёт", "счета"),
            ("заказ", "заказы"),
            ("доставка", "доставки"),
            ("возврат", "возвраты"),
            ("подписка", "подписки"),
            ("посылка", "посылки"),
            ("платёж", "платежи"),
            ("списание", "списания"),
            ("жалоба", "жалобы"),
            ("договор", "договоры"),
        ),
        said=(
            "Мои {said} за {month} неправильные.",
            "Я всё ещё жду {said} за {month}.",
            "С {said} в {month} что-то пошло не так.",
            "В {month} два {said} записали дважды.",
        ),
        asked=(
            "Короткий вопрос про {asked}: как дела?",
            "Что в итоге случилось с {asked}?",
            "Проверьте, пожалуйста, {asked} ещё раз.",
        ),
        filler=(
            "Здравствуйте, это снова я.",
            "Спасибо за быстрый ответ!",
            "Завтра я на связи весь день.",
            "Это очень помогло, большое спасибо.",
            "Лучше пишите мне вечером.",
            "До скорого и хороших выходных!",
        ),
        months=("январь", "март", "май", "июль", "октябрь"),
    ),
}


@dataclass(frozen=True, slots=True)
class Customer:
    language: str
    said: tuple[str, ...]  # in the order said, one day apart
    questions: tuple[tuple[str, int], ...]  # (question, the index in ``said`` of the line it is about)
    short: tuple[tuple[str, int], ...] = ()  # the same things asked in one word ("pedido?")


def generate(customers: int, seed: int) -> list[Customer]:
    """``customers`` customers per language, each with a line about every thing and a question about each."""
    rng = random.Random(seed)
    made = []
    for code, language in LANGUAGES.items():
        for _ in range(customers):
            lines = [
                (rng.choice(language.said).format(said=said, month=rng.choice(language.months)), number)
                for number, (_, said) in enumerate(language.things)
            ]
            lines += [(text, -1) for text in rng.sample(language.filler, 4)]
            rng.shuffle(lines)
            where = {number: at for at, (_, number) in enumerate(lines) if number >= 0}
            questions = tuple(
                (rng.choice(language.asked).format(asked=asked), where[number])
                for number, (asked, _) in enumerate(language.things)
            )
            short = tuple((f"{asked}?", where[number]) for number, (asked, _) in enumerate(language.things))
            made.append(Customer(code, tuple(text for text, _ in lines), questions, short))
    return made


@contextmanager
def english_only() -> Iterator[None]:
    """Every text and query stemmed as English (the keyword side before ``core.memory.lexemes``)."""
    real = lexemes.language
    real_candidates = lexemes.languages
    lexemes.language = lambda text: lexemes.DEFAULT_LANGUAGE
    lexemes.languages = lambda text: (lexemes.DEFAULT_LANGUAGE,)
    try:
        yield
    finally:
        lexemes.language = real
        lexemes.languages = real_candidates


async def _measure(memory: LocalMemory, customers: list[Customer]) -> dict[str, Any]:
    start = datetime(2026, 3, 1, 10, tzinfo=UTC)
    ranks: dict[str, list[int | None]] = {}
    short: dict[str, list[int | None]] = {}
    for number, customer in enumerate(customers):
        customer_id = f"cus_{customer.language}{number:04d}"
        ids: list[str] = []
        for day, text in enumerate(customer.said):
            provenance = Provenance(
                channel="sms",
                handle="sms:+15550000000",
                message_ids=(f"inbox:{day}",),
                category="support_history",
                said_at=start + timedelta(days=day),  # each line a conversation of its own
            )
            written = await memory.remember(
                customer_id, [ChatMessage(role="user", content=text)], provenance=provenance, infer=False
            )
            ids.append(written[0])
        for asked, into in ((customer.questions, ranks), (customer.short, short)):
            for question, about in asked:
                found = [m.id for m in await memory.recall(customer_id, question, limit=10)]
                into.setdefault(customer.language, []).append(
                    found.index(ids[about]) if ids[about] in found else None
                )
    return {**_shares(ranks), "short": _shares(short)}


def _shares(ranks: dict[str, list[int | None]]) -> dict[str, Any]:
    every = [rank for found in ranks.values() for rank in found]

    def share(found: list[int | None], k: int) -> float:
        return round(sum(rank is not None and rank < k for rank in found) / len(found), 4) if found else 0.0

    return {
        "hit@1": share(every, 1),
        "hit@3": share(every, 3),
        "questions": len(every),
        "by_language": {code: {"hit@1": share(r, 1), "hit@3": share(r, 3)} for code, r in ranks.items()},
    }


async def run(customers: int, seed: int, data_dir: Path) -> dict[str, Any]:
    """Both sides on the same generated customers, each in a store of its own under ``data_dir``."""
    cases = generate(customers, seed)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for side in ("product", "english_only"):
        memory = LocalMemory(data_dir=data_dir / side, llm=LLMSettings())
        try:
            if side == "english_only":
                with english_only():
                    results[side] = await _measure(memory, cases)
            else:
                results[side] = await _measure(memory, cases)
        finally:
            await memory.aclose()
    return {**results, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=4, help="customers per language")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="the results folder")
    args = parser.parse_args()
    machine = print_machine()
    with TemporaryDirectory() as folder:
        results = asyncio.run(run(args.customers, args.seed, Path(folder)))
    bench = Run("multilingual_recall", machine, {"customers_per_language": args.customers, "seed": args.seed})
    bench.note("product: each text stemmed in its language; english_only: every text stemmed as English")
    path = bench.write(results, args.out)
    for side in ("product", "english_only"):
        for label, found in ((side, results[side]), (f"{side}, one word", results[side]["short"])):
            languages = "  ".join(
                f"{code} {r['hit@1']:.2f}/{r['hit@3']:.2f}" for code, r in found["by_language"].items()
            )
            hits = f"hit@1 {found['hit@1']:.3f}  hit@3 {found['hit@3']:.3f}  of {found['questions']}"
            print(f"{label:22s} {hits}  {languages}")
    print(f"written to {path}")


if __name__ == "__main__":
    main()

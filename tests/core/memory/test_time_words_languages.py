"""The time prior in Spanish, French, German, Portuguese and Italian (``core.memory.time_words_languages``):
what says when and what asks when, accents typed or not, and names and words that only look like dates."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.memory.local import LocalMemory
from core.memory.time_words import asks_when, says_when
from core.memory.time_words_languages import fold
from core.messages import ChatMessage, Provenance
from core.settings import LLMSettings

SAYS = [
    # Spanish
    "El router se rompió hace dos semanas.",
    "Ayer me cobraron dos veces.",
    "Cambié de plan en mayo.",
    "La factura llegó el lunes.",
    "Desde hace meses la conexión va lenta.",
    "la semana pasada llame tres veces",  # typed without accents
    "El 5 de marzo pagué la cuota.",
    # French
    "Ma box ne marche plus depuis trois jours.",
    "J'ai commandé le routeur il y a deux semaines.",
    "Le technicien est passé hier.",
    "On m'a facturé deux fois le mois dernier.",
    "Je suis abonné depuis 2019 et j'ai déménagé en juillet.",
    "Aujourd'hui encore pas de connexion.",
    "Hier, j'ai appelé trois fois.",  # "hier" in a French text
    "hier soir la box a encore planté",
    "La facture d'hier est fausse.",
    "Hier.",  # a bare answer to "when?"
    # German
    "Der Router ist vor zwei Wochen kaputtgegangen.",
    "Gestern kam die Rechnung.",
    "Ich habe im März den Tarif gewechselt.",
    "Seit drei Tagen kein Internet.",
    "letzte woche habe ich angerufen",
    "Am Montag war der Techniker da.",
    "Die Lieferung kam am 5. Mai.",
    # Portuguese
    "O roteador quebrou há duas semanas.",
    "Ontem me cobraram duas vezes.",
    "Mudei de plano em março.",
    "A fatura chegou na segunda-feira.",
    "Paguei três dias atrás.",
    # Italian
    "Il router si è rotto due settimane fa.",
    "Ieri mi hanno addebitato due volte.",
    "Ho cambiato piano a maggio.",
    "La fattura è arrivata lunedì scorso.",
    "Non ho internet da tre giorni.",
]

DOES_NOT_SAY = [
    "Julio me ayudó con la factura.",  # a name, not July
    "Domingo es mi gestor de cuenta.",  # a name, not Sunday
    "Quiero más mayonesa y mayo en el pedido.",
    "El coche de Julio está en el taller.",
    "Mi router no funciona.",
    "Le robot explore la planète Mars.",
    "Ma box ne marche plus.",
    "Guten Tag, mein Router blinkt rot.",
    "Der Router steht vor dem Fenster.",
    "O roteador não liga.",
    "Il router lampeggia di rosso.",
    "Parlo con Maggio, il tecnico.",
    "Ha ha, that is funny.",
    "Ich bin hier, der Router blinkt.",  # German "hier": here
    "Hier ist meine neue Adresse.",
    "Ik ben hier, de router knippert.",  # Dutch, the same
    "Fuimos al mar y el router no tenía señal.",  # the sea, not an abbreviated March
    "Jan hat mir mit dem Router geholfen.",  # a first name, not January
]

ASKS = [
    "¿Cuándo se rompió mi router?",
    "cuando llego la factura?",
    "¿Desde cuándo tengo este plan?",
    "¿Hace cuánto tiempo pedí el router?",
    "¿En qué año abrí la cuenta?",
    "Quand est-ce que j'ai commandé la box ?",
    "Depuis quand suis-je abonné ?",
    "Il y a combien de temps que j'ai appelé ?",
    "Wann ist der Router kaputtgegangen?",
    "Seit wann habe ich diesen Tarif?",
    "Wie lange dauert die Lieferung schon?",
    "Quando o roteador quebrou?",
    "Há quanto tempo pedi o roteador?",
    "Quando si è rotto il router?",
    "Da quanto tempo ho questo piano?",
    "In che anno ho aperto il conto?",
]

DOES_NOT_ASK = [
    "Cuando llamé, nadie contestó.",  # the conjunction
    "¿Por qué no funciona mi internet?",
    "Quand j'ai appelé, personne n'a répondu.",
    "Warum ist mein Internet so langsam?",
    "Quando liguei, ninguém atendeu.",
    "Quando ho chiamato, nessuno ha risposto.",
    "Perché il router lampeggia?",
]


@pytest.mark.parametrize("text", SAYS)
def test_a_memory_that_says_when(text: str) -> None:
    assert says_when(text)


@pytest.mark.parametrize("text", DOES_NOT_SAY)
def test_a_memory_that_does_not_say_when(text: str) -> None:
    assert not says_when(text)


@pytest.mark.parametrize("query", ASKS)
def test_a_message_that_asks_when(query: str) -> None:
    assert asks_when(query)


@pytest.mark.parametrize("query", DOES_NOT_ASK)
def test_a_message_that_does_not_ask_when(query: str) -> None:
    assert not asks_when(query)


def test_folding_drops_accents_and_case() -> None:
    assert fold("Miércoles, MÄRZ, lunedì, Cuándo, Ação") == "miercoles, marz, lunedi, cuando, acao"


async def test_recall_brings_the_line_that_says_when_first_for_a_spanish_question(tmp_path: Path) -> None:
    """Through the product's recall: the customer said in Spanish when the outage began, among lines about
    the same outage that share as many words with the question."""
    memory = LocalMemory(data_dir=tmp_path, llm=LLMSettings())
    said = [
        "Mi internet no funciona y el router tiene las luces apagadas.",
        "Se cortó el internet el domingo por la tarde.",
        "¿Hay un corte de internet en mi zona? El router no tiene internet.",
        "Reinicié el router pero el internet sigue sin funcionar.",
    ]
    ids = []
    try:
        for turn, text in enumerate(said):
            ids += await memory.remember(
                "cus_es",
                [ChatMessage(role="user", content=text)],
                provenance=Provenance(
                    channel="sms",
                    handle="sms:+34600000001",
                    message_ids=(f"inbox:{turn}",),
                    category="profile",
                ),
                infer=False,
            )
        when = await memory.recall("cus_es", "¿Cuándo se cortó mi internet?", limit=4)
        assert when[0].id == ids[1]
        why = await memory.recall("cus_es", "¿Por qué se cortó mi internet?", limit=4)
        assert why[0].id != ids[1]
    finally:
        await memory.aclose()

"""The time prior's two sides (``core.memory.time_words``) in Spanish, French, German, Portuguese and
Italian, beside the English of ``time_words``.

Matched on the text folded (:func:`fold`: accents dropped, lower case), since customers type "cuando",
"lunedi" and "marz" as often as "cuándo", "lunedì" and "März"; the patterns are written folded.

- **Says when** (:func:`says_when`): relative days ("ayer", "hier", "gestern", "ontem", "ieri"), a count
  of units ago ("hace dos semanas", "il y a trois jours", "vor zwei Wochen", "há dois meses", "due
  settimane fa"), last / this / next week or month, since, and a month or a weekday *after a word or a
  day number that goes with a date* ("en mayo", "5 de marzo", "le lundi", "im Mai", "am 5. Mai",
  "na segunda-feira", "a maggio"): a month or a weekday alone is also a name ("Julio", "Domingo",
  "Abril", "Maggio") or a word ("mayo", "mars"). French "hier" alone is also German and Dutch for "here":
  it counts in a text that reads French (:func:`says_when`).
- **Asks when** (:data:`ASKS_WHEN`): when, since when, how long, what year / month / day / date, how
  many years, how old. A bare "cuando" / "quand" / "quando" counts before a question mark, or opening
  the message unless it opens a clause there (a comma follows, no question mark: "Cuando llamé, nadie
  contestó."); inside a sentence it is the conjunction. German "wann" is only ever the question.

Years and numeric dates (2022, 5/14) are the same in every language and stay in ``time_words``.
"""

from __future__ import annotations

import re
import unicodedata


def fold(text: str) -> str:
    """``text`` lower-cased without its accents ("Miércoles" -> "miercoles", "März" -> "marz")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _any(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


# A message that opens with the word for "when" asks when unless that word opens a clause: then a comma
# follows and no question mark does ("Cuando llamé, nadie contestó.").
_OPENS = r"^\W*"
NOT_A_CLAUSE = r"\b(?=[^,]*$|.*\?)"  # after the word: no comma follows, or a question mark does

# ----- Spanish ---------------------------------------------------------------------------------
_ES_UNIT = _any(
    r"segundos?", r"minutos?", r"horas?", r"dias?", r"noches?", r"semanas?", r"fines? de semana",
    r"mes(?:es)?", r"anos?", r"decadas?", r"veranos?", r"inviernos?",
)  # fmt: skip
_ES_COUNT = _any(
    r"\d+", "un", "una", "unos", "unas", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve",
    "diez", "once", "doce", "varios", "varias", "pocos", "pocas", "algunos", "algunas", "muchos", "muchas",
)  # fmt: skip
_ES_MONTH = _any(
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "setiembre",
    "octubre", "noviembre", "diciembre",
)  # fmt: skip
_ES_DAY = _any("lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo")
_ES_SAYS = (
    r"ayer|anteayer|anoche|hoy|recientemente|ultimamente|"
    rf"hace\s+(?:{_ES_COUNT}\s+)?{_ES_UNIT}|"
    rf"(?:{_ES_UNIT}|{_ES_DAY})\s+(?:pasad[oa]s?|que viene)|"
    rf"(?:este|esta|proxim[oa]|ultim[oa]s?|pasad[oa])\s+(?:{_ES_UNIT}|{_ES_DAY})|"
    rf"(?:en|desde|hasta|principios de|finales de|mediados de|\d{{1,2}} de)\s+{_ES_MONTH}|"
    rf"(?:el|los|este|cada)\s+{_ES_DAY}|"
    rf"desde\s+(?:hace|que|ayer|hoy|entonces|{_ES_DAY}|\d)|"
    rf"(?:durante|en)\s+los?\s+(?:ultim[oa]s|pasad[oa]s)\s+(?:{_ES_COUNT}\s+)?{_ES_UNIT}"
)
_ES_ASKS = "|".join(
    [
        _OPENS + "cuando" + NOT_A_CLAUSE, r"\bcuando\s*\?", r"¿\s*cuando\b", r"\bdesde cuando\b",
        r"\bhace cuanto\b", r"\bcuanto tiempo\b", r"\b(?:que|cual|en que)\s+(?:ano|mes|dia|fecha|semana)\b",
        r"\bcuant[oa]s\s+(?:anos|meses|semanas|dias)\b", r"\bque edad\b",
    ]
)  # fmt: skip

# ----- French ----------------------------------------------------------------------------------
_FR_UNIT = _any(
    r"secondes?", r"minutes?", r"heures?", r"jours?", r"nuits?", r"semaines?", r"week-?ends?", r"mois",
    r"ans", r"annees?", r"decennies?", r"etes?", r"hivers?",
)  # fmt: skip
_FR_COUNT = _any(
    r"\d+", "un", "une", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze",
    "douze", "quelques", "plusieurs",
)  # fmt: skip
_FR_MONTH = _any(
    "janvier", "fevrier", "mars", "avril", "mai", "juin", "juillet", "aout", "septembre", "octobre",
    "novembre", "decembre",
)  # fmt: skip
_FR_DAY = _any("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_FR_SAYS = (
    r"avant-hier|hier (?:soir|matin|apres-midi)|d.hier|aujourd.hui|demain|recemment|dernierement|ce matin|"
    r"ce soir|cette nuit|"
    rf"il y a\s+(?:{_FR_COUNT}\s+)?{_FR_UNIT}|"
    rf"(?:{_FR_UNIT}|{_FR_DAY})\s+(?:derniere?|passee?|prochaine?)|"
    rf"(?:cette|ce|cet)\s+(?:semaine|mois|annee|ete|hiver|week-?end|apres-midi)|"
    rf"(?:(?:en|depuis|jusqu.en|debut|fin|\d{{1,2}}(?:er)?)\s+|mi-){_FR_MONTH}|"
    rf"(?:le|ce|chaque)\s+{_FR_DAY}|"
    rf"depuis\s+(?:{_FR_COUNT}\s+{_FR_UNIT}|hier|que|{_FR_DAY}|\d)"
)
_FR_ASKS = "|".join(
    [
        _OPENS + "quand" + NOT_A_CLAUSE, r"\bquand\s*\?", r"\bquand est-ce\b", r"\bdepuis quand\b",
        r"\bc.etait quand\b", r"\bcombien de temps\b", r"\bil y a combien\b",
        r"\b(?:quelle|quel)\s+(?:annee|mois|jour|date|semaine|age)\b", r"\ben quelle annee\b",
        r"\bcombien (?:d.annees|de mois|de semaines|de jours)\b",
    ]
)  # fmt: skip

# ----- German ----------------------------------------------------------------------------------
_DE_UNIT = _any(
    r"sekunden?", r"minuten?", r"stunden?", r"tagen?", r"tage", r"nachte?n?", r"wochen?", r"wochenenden?",
    r"monate?n?", r"jahre?n?", r"jahrzehnte?n?",
)  # fmt: skip
_DE_COUNT = _any(
    r"\d+", "einem", "einer", "einen", "ein", "eine", "zwei", "drei", "vier", "funf", "sechs", "sieben",
    "acht", "neun", "zehn", "elf", "zwolf", "ein paar", "paar", "einigen", "mehreren", "vielen",
)  # fmt: skip
_DE_MONTH = _any(
    "januar", "janner", "februar", "marz", "april", "mai", "juni", "juli", "august", "september", "oktober",
    "november", "dezember",
)  # fmt: skip
_DE_DAY = _any("montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonnabend", "sonntag")
_DE_SAYS = (
    r"gestern|vorgestern|heute|neulich|kurzlich|vorhin|letztens|"
    rf"vor\s+(?:{_DE_COUNT}\s+)?{_DE_UNIT}|"
    rf"(?:letzte[nrs]?|vergangene[nrs]?|diese[nrs]?|nachste[nrs]?|kommende[nrs]?)\s+"
    rf"(?:{_DE_UNIT}|{_DE_DAY}|{_DE_MONTH})|"
    rf"(?:im|ab|seit|bis|anfang|ende|mitte|\d{{1,2}}\.?)\s+{_DE_MONTH}|"
    rf"(?:am|jeden|diesen|letzten)\s+{_DE_DAY}|"
    rf"seit\s+(?:{_DE_COUNT}\s+)?(?:{_DE_UNIT}|gestern|heute|{_DE_DAY}|\d)"
)
_DE_ASKS = (
    r"\bwann\b|\bwie lange\b|\bwie alt\b|\bwelche[snmr]?\s+(?:jahr|monat|tag|datum|woche)\b|"
    r"\bin welchem (?:jahr|monat)\b|\bwie viele (?:jahre|monate|wochen|tage)\b|\bvor wie (?:vielen|langer)\b"
)

# ----- Portuguese ------------------------------------------------------------------------------
_PT_UNIT = _any(
    r"segundos?", r"minutos?", r"horas?", r"dias?", r"noites?", r"semanas?", r"fins? de semana",
    r"mes(?:es)?", r"anos?", r"decadas?",
)  # fmt: skip
_PT_COUNT = _any(
    r"\d+", "um", "uma", "dois", "duas", "tres", "quatro", "cinco", "seis", "sete", "oito", "nove", "dez",
    "alguns", "algumas", "varios", "varias", "poucos", "poucas", "muitos", "muitas",
)  # fmt: skip
_PT_MONTH = _any(
    "janeiro", "fevereiro", "marco", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro",
    "novembro", "dezembro",
)  # fmt: skip
_PT_DAY = r"(?:(?:segunda|terca|quarta|quinta|sexta)(?:-feira)?|sabado|domingo)"
_PT_SAYS = (
    r"ontem|anteontem|hoje|amanha|recentemente|ultimamente|"
    rf"ha\s+(?:{_PT_COUNT}\s+)?{_PT_UNIT}|(?:{_PT_COUNT}\s+)?{_PT_UNIT}\s+atras|"
    rf"(?:{_PT_UNIT}|{_PT_DAY})\s+passad[oa]s?|"
    rf"(?:est[ea]|nest[ea]|proxim[oa]|ultim[oa]s?)\s+(?:{_PT_UNIT}|{_PT_DAY})|"
    rf"(?:em|desde|ate|inicio de|fim de|\d{{1,2}} de)\s+{_PT_MONTH}|"
    rf"(?:na|no|toda|todo)\s+{_PT_DAY}|"
    rf"desde\s+(?:ontem|hoje|que|{_PT_DAY}|\d)"
)
_PT_ASKS = "|".join(
    [
        _OPENS + "quando" + NOT_A_CLAUSE, r"\bquando\s*\?", r"\bdesde quando\b", r"\bha quanto tempo\b",
        r"\bquanto tempo\b", r"\b(?:que|qual|em que)\s+(?:ano|mes|dia|data|semana)\b",
        r"\bquant[oa]s\s+(?:anos|meses|semanas|dias)\b", r"\bque idade\b",
    ]
)  # fmt: skip

# ----- Italian ---------------------------------------------------------------------------------
_IT_UNIT = _any(
    r"second[oi]", r"minut[oi]", r"or[ae]", r"giorn[oi]", r"nott[ei]", r"settiman[ae]", r"fine settimana",
    r"weekend", r"mes[ei]", r"ann[oi]", r"decenn[ie]", r"estat[ei]", r"invern[oi]",
)  # fmt: skip
_IT_COUNT = _any(
    r"\d+", "un", "uno", "una", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove", "dieci",
    "undici", "dodici", "alcun[ie]", "qualche", "parecchi[e]?", "molt[ie]", "poch[ie]",
)  # fmt: skip
_IT_MONTH = _any(
    "gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre", "ottobre",
    "novembre", "dicembre",
)  # fmt: skip
_IT_DAY = _any("lunedi", "martedi", "mercoledi", "giovedi", "venerdi", "sabato", "domenica")
_IT_SAYS = (
    r"ieri|l.altro ieri|altroieri|oggi|domani|stamattina|stasera|recentemente|ultimamente|"
    rf"(?:{_IT_COUNT}\s+)?{_IT_UNIT}\s+fa|"
    rf"(?:{_IT_UNIT}|{_IT_DAY})\s+scors[oa]|"
    rf"(?:quest[oa]|quest.|prossim[oa]|scors[oa])\s*(?:{_IT_UNIT}|{_IT_DAY})|"
    rf"(?:a|da|in|fino a|inizio|fine|meta|\d{{1,2}})\s+{_IT_MONTH}|"
    rf"(?:il|la|ogni|questo|questa)\s+{_IT_DAY}|"
    rf"da\s+(?:{_IT_COUNT}\s+{_IT_UNIT}|ieri|oggi|quando|{_IT_DAY}|\d)"
)
_IT_ASKS = "|".join(
    [
        _OPENS + "quando" + NOT_A_CLAUSE, r"\bquando\s*\?", r"\bda quando\b", r"\bda quanto tempo\b",
        r"\bquanto tempo\b", r"\b(?:che|quale|in che)\s+(?:anno|mese|giorno|data|settimana)\b",
        r"\bquant[ie]\s+(?:anni|mesi|settimane|giorni)\b",
    ]
)  # fmt: skip

LANGUAGES = ("es", "fr", "de", "pt", "it")
_SAYS_WHEN = re.compile(r"\b(?:" + "|".join((_ES_SAYS, _FR_SAYS, _DE_SAYS, _PT_SAYS, _IT_SAYS)) + r")\b")
ASKS_WHEN = re.compile("|".join((_ES_ASKS, _FR_ASKS, _DE_ASKS, _PT_ASKS, _IT_ASKS)))

# French "hier" (yesterday) is German and Dutch for "here" ("Ich bin hier", "Hier ist meine neue Adresse").
# Alone it says when only in a text that reads French: more of these French words in it than German and
# Dutch ones, or none of either (a bare "Hier." answering "when?"). "hier soir", "d'hier", "depuis hier"
# and "avant-hier" are French wherever they stand.
_HIER = re.compile(r"\bhier\b")
_FRENCH = re.compile(
    r"\b(?:je|j|tu|il|elle|nous|vous|ils|elles|le|la|les|une|du|et|est|suis|ai|avons|avez|ont|etait|"
    r"au|aux|pour|pas|ne|n|que|qu|qui|avec|mon|ma|mes|ce|cette|sur|dans|c|d|l)\b"
)
_GERMAN_OR_DUTCH = re.compile(
    r"\b(?:ich|bin|ist|sind|und|der|das|dem|den|nicht|mit|mein|meine|meinen|wir|habe|hat|haben|auf|fur|"
    r"zu|war|wurde|kann|noch|auch|schon|bitte|danke|sie|es|ein|eine|einen|einem|einer|wohne|"
    r"ik|het|een|niet|ben|mijn|heb|heeft|maar|ook|zijn|wij|jullie|van|wat|woon)\b"
)


def says_when(folded: str) -> bool:
    """Whether a text (:func:`fold` ed) says when in one of :data:`LANGUAGES`."""
    if _SAYS_WHEN.search(folded):
        return True
    if not _HIER.search(folded):
        return False
    french, other = len(_FRENCH.findall(folded)), len(_GERMAN_OR_DUTCH.findall(folded))
    return french > other or french == other == 0

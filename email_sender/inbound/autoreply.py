"""Auto-replies and out-of-office notices (RFC 3834 and what real responders send instead).

An automatic answer must never count as a human reply: it would mark a contact as engaged and
stop a sequence for nothing. Headers are the strong signals (``Auto-Submitted``, ``X-Autoreply``,
``Precedence``, the null sender); responders that send none are caught by their subject, in
French, English, German and Spanish. An out-of-office notice often says when its sender is back:
``parse_return_date`` reads that date so a follow-up can wait for it.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from dataclasses import dataclass

from email_sender.inbound.dsn import parse_report
from email_sender.inbound.parse import ParsedMessage

# Out-of-office notices put their words early; reading further only finds quoted mail.
_SCAN_CHARS = 5_000
_DATE_WINDOW_CHARS = 60

_AUTOMATIC_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})
_AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply")

# Subjects (accents folded, case-folded) that responders start with. Matched at the start only:
# a human writing "Re: absence de Paul" is answering, not away.
_ABSENCE_SUBJECTS = (
    "absence",
    "absent du bureau",
    "absent",
    "out of office",
    "out of the office",
    "ooo:",
    "on vacation",
    "on holiday",
    "abwesenheitsnotiz",
    "abwesend",
    "nicht im buro",
    "fuera de la oficina",
    "ausente",
    "ausencia",
    "de vacaciones",
)
_AUTOMATIC_SUBJECTS = (
    "reponse automatique",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "automatische antwort",
    "respuesta automatica",
)
# Words in the text that make an automatic answer an absence notice.
_ABSENCE_WORDS = re.compile(
    r"\b(?:absent|absente|absence|en conge|en conges|en vacances|de retour|"
    r"out of (?:the )?office|on (?:annual )?leave|on holiday|on vacation|away from (?:the )?office"
    r"|back on|back in the office|returning on|"
    r"abwesend|abwesenheit|im urlaub|nicht im buro|wieder im buro|"
    r"fuera de la oficina|de vacaciones|ausente|de vuelta|regresare)\b"
)

_MONTHS = {
    # French
    "janvier": 1, "janv": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "avril": 4, "avr": 4,
    "mai": 5, "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "octobre": 10,
    "novembre": 11, "decembre": 12,
    # English
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
    # German (accents folded: "März" reads "marz")
    "januar": 1, "jaenner": 1, "februar": 2, "marz": 3, "maerz": 3, "mrz": 3, "juni": 6,
    "juli": 7, "oktober": 10, "okt": 10, "dezember": 12, "dez": 12,
    # Spanish
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
    "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11,
    "diciembre": 12,
}  # fmt: skip
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
# What introduces a return date, in the four languages (accents folded).
_RETURN_CUES = re.compile(
    r"\b(?:de retour|retour le|retour prevu|a partir du|a partir de|a compter du|jusqu'au|"
    r"jusqu au|reprendrai|back on|back in the office on|back in office on|back|returning on|"
    r"returning|return on|return|until|till|ab dem|ab|wieder|zuruck am|zuruck|bis zum|bis|"
    r"hasta el|hasta|de vuelta el|de vuelta|regreso el|regresare el|volvere el|a partir del)\b"
)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})[/.](\d{1,2})(?:[/.](\d{4}|\d{2}))?\b")
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th|er|e|o|\.)?\s*(?:de\s+|of\s+)?({_MONTH})\b\.?"
    rf"(?:,?\s*(?:de\s+)?(\d{{4}}))?"
)
_MONTH_DAY = re.compile(rf"\b({_MONTH})\b\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s*(\d{{4}}))?")


@dataclass(frozen=True)
class AutoReply:
    """An automatic answer: an absence notice or another automatic reply."""

    kind: str
    reason: str
    return_date: datetime.date | None


def detect(parsed: ParsedMessage, *, null_sender: bool = False) -> AutoReply | None:
    """The automatic answer ``parsed`` is, or None for a human message (or a bounce/complaint).

    ``null_sender``: it came over SMTP with ``MAIL FROM:<>``, which a receiving relay would
    have written as an empty Return-Path (RFC 3834).
    """
    if _is_report(parsed):
        return None
    subject = fold(parsed.subject)
    reasons = _header_reasons(parsed, null_sender) + _subject_reasons(parsed.subject, subject)
    if not reasons:
        return None
    text = fold(parsed.text[:_SCAN_CHARS])
    absent = any(subject.startswith(phrase) for phrase in _ABSENCE_SUBJECTS) or bool(
        _ABSENCE_WORDS.search(text)
    )
    if not absent:
        return AutoReply(kind="auto_reply", reason=reasons[0], return_date=None)
    reference = _reference_date(parsed)
    return_date = parse_return_date(parsed.text[:_SCAN_CHARS], reference=reference)
    if return_date is None:
        return_date = parse_return_date(parsed.subject, reference=reference)
    return AutoReply(kind="out_of_office", reason=reasons[0], return_date=return_date)


def parse_return_date(text: str, *, reference: datetime.date) -> datetime.date | None:
    """The first date given after a return cue ("back on", "de retour le", "ab dem", "hasta").

    Day-first for numeric dates (03/03), as in the four languages read here. Without a year, the
    reference date's year, or the next year when that day is already past.
    """
    folded = fold(text[:_SCAN_CHARS])
    for cue in _RETURN_CUES.finditer(folded):
        window = folded[cue.end() : cue.end() + _DATE_WINDOW_CHARS]
        found = _first_date(window, reference)
        if found is not None:
            return found
    return None


def fold(text: str) -> str:
    """Case-folded, accents removed ("Réponse" -> "reponse", "März" -> "marz"), for matching."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _is_report(parsed: ParsedMessage) -> bool:
    """A bounce or a complaint is not an auto-reply, whatever headers it carries."""
    try:
        if parsed.message.get_content_type() == "multipart/report":
            return True
    except Exception:  # an unreadable Content-Type: let parse_report decide
        pass
    return parse_report(parsed.message) is not None


def _header_reasons(parsed: ParsedMessage, null_sender: bool) -> list[str]:
    reasons = []
    auto_submitted = (parsed.header("Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        reasons.append(f"header:Auto-Submitted={auto_submitted}")
    for name in _AUTOREPLY_HEADERS:
        value = parsed.header(name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            reasons.append(f"header:{name}")
    for name in ("Precedence", "X-Precedence"):
        value = (parsed.header(name) or "").strip().lower()
        if value in _AUTOMATIC_PRECEDENCE:
            reasons.append(f"header:{name}={value}")
    if parsed.return_path == "":
        reasons.append("header:Return-Path=<>")
    elif null_sender:
        reasons.append("envelope:MAIL FROM=<>")
    # X-Auto-Response-Suppress is also set by Outlook on ordinary mail: it only backs a signal.
    if reasons and parsed.header("X-Auto-Response-Suppress") is not None:
        reasons.append("header:X-Auto-Response-Suppress")
    return reasons


def _subject_reasons(subject: str, folded_subject: str) -> list[str]:
    stripped = folded_subject.lstrip(" [")
    for phrase in (*_AUTOMATIC_SUBJECTS, *_ABSENCE_SUBJECTS):
        if stripped.startswith(phrase):
            shown = subject.lstrip(" [")[: len(phrase)]
            return [f"subject:{shown}"]
    return []


def _reference_date(parsed: ParsedMessage) -> datetime.date:
    if parsed.date is not None:
        try:
            return datetime.datetime.fromtimestamp(parsed.date, datetime.UTC).date()
        except (OverflowError, OSError, ValueError):
            pass
    return datetime.datetime.now(datetime.UTC).date()


def _first_date(window: str, reference: datetime.date) -> datetime.date | None:
    """The earliest date in ``window`` in any of the accepted forms."""
    candidates: list[tuple[int, int, int, int | None]] = []  # (position, day, month, year)
    if match := _ISO_DATE.search(window):
        candidates.append(
            (match.start(), int(match.group(3)), int(match.group(2)), int(match.group(1)))
        )
    if match := _DAY_MONTH.search(window):
        year = int(match.group(3)) if match.group(3) else None
        candidates.append((match.start(), int(match.group(1)), _MONTHS[match.group(2)], year))
    if match := _MONTH_DAY.search(window):
        year = int(match.group(3)) if match.group(3) else None
        candidates.append((match.start(), int(match.group(2)), _MONTHS[match.group(1)], year))
    if match := _NUMERIC_DATE.search(window):
        year = _full_year(match.group(3)) if match.group(3) else None
        candidates.append((match.start(), int(match.group(1)), int(match.group(2)), year))
    for _, day, month, year in sorted(candidates, key=lambda candidate: candidate[0]):
        found = _date(day, month, year, reference)
        if found is not None:
            return found
    return None


def _full_year(text: str) -> int:
    return int(text) + 2000 if len(text) == 2 else int(text)


def _date(day: int, month: int, year: int | None, reference: datetime.date) -> datetime.date | None:
    try:
        if year is not None:
            return datetime.date(year, month, day)
        found = datetime.date(reference.year, month, day)
        if found < reference:
            found = datetime.date(reference.year + 1, month, day)
        return found
    except ValueError:  # 31/02, month 13: not a date
        return None

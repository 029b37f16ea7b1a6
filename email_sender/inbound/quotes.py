"""What the sender of a reply wrote, apart from the history it quotes and its signature.

Intent classification and the console read ``own_words``: the quoted history repeats the
service's own email, which would otherwise drown the answer. Mail clients mark history in a
few well-known ways (an attribution line "On ... wrote:", an "-----Original Message-----"
separator, an Outlook header block, ``>`` quoting); this module recognises them in French,
English, German and Spanish. It reads line by line with string tests, no backtracking regex,
so a megabyte of hostile text costs one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

# An attribution longer than this is a paragraph that happens to start with "On".
_MAX_ATTRIBUTION_CHARS = 500
_MAX_SIGNATURE_LINE_CHARS = 100
# How far below a "From:" line the rest of an Outlook header block may be.
_HEADER_BLOCK_LINES = 6

_ATTRIBUTION_STARTS = ("le ", "on ", "am ", "el ")
_ATTRIBUTION_ENDS = ("a écrit :", "a écrit:", "écrit :", "écrit:", "wrote:", "schrieb:",
                     "escribió:")  # fmt: skip
_SEPARATOR_WORDS = frozenset(
    {
        "original message",
        "message d'origine",
        "message d\u2019origine",  # typographic apostrophe
        "ursprüngliche nachricht",
        "mensaje original",
        "forwarded message",
        "message transféré",
        "weitergeleitete nachricht",
        "mensaje reenviado",
    }
)
_FROM_LABELS = ("from:", "from :", "de:", "de :", "von:", "*from:*", "*de :*", "*de:*")
_SENT_LABELS = ("sent:", "sent :", "date:", "date :", "envoyé:", "envoyé :", "gesendet:",
                "datum:", "enviado:", "enviado el:", "fecha:", "*sent:*", "*envoyé :*")  # fmt: skip
_SUBJECT_LABELS = ("subject:", "subject :", "objet:", "objet :", "betreff:", "asunto:",
                   "*subject:*", "*objet :*")  # fmt: skip
_SIGNATURE_STARTS = (
    "envoyé de mon ",
    "envoyé depuis mon ",
    "sent from my ",
    "get outlook for ",
    "télécharger outlook pour ",
    "von meinem ",
    "gesendet von meinem ",
    "enviado desde mi ",
)
# Closing formulas that open a signature when they stand alone on a line near the end.
_SIGN_OFFS = frozenset(
    {
        "cordialement", "bien cordialement", "très cordialement", "bien à vous", "bien a vous",
        "à bientôt", "a bientot", "salutations", "sincères salutations",
        "meilleures salutations", "amicalement", "bonne journée", "belle journée",
        "bonne soirée", "bien amicalement", "merci d'avance", "merci d\u2019avance", "bises",
        "best regards", "kind regards", "warm regards", "regards", "best", "thanks",
        "many thanks", "thank you", "cheers", "sincerely", "all the best", "yours sincerely",
        "mit freundlichen grüßen", "viele grüße", "beste grüße", "freundliche grüße",
        "saludos", "un saludo", "saludos cordiales", "atentamente", "un cordial saludo",
    }
)  # fmt: skip
# A sign-off opens the signature only when at most this many short lines follow it.
_SIGN_OFF_TAIL_LINES = 6
_SIGN_OFF_TAIL_CHARS = 80
# First characters of the lines worth testing: most lines are skipped on one set lookup.
_MARKER_FIRST_CHARS = frozenset("loae-_fdv*")
_SIGNATURE_FIRST_CHARS = frozenset("-egstv")


@dataclass(frozen=True)
class ReplySplit:
    """A reply's text split into the sender's own words and the rest."""

    own_words: str
    quoted: str


def split_reply(text: str) -> ReplySplit:
    """Split ``text`` at the quoted history; ``>`` lines and the signature go to ``quoted``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # The form markers are tested on: non-breaking spaces as spaces, ends stripped, lower case.
    spaced = text.replace("\u00a0", " ").replace("\u202f", " ").replace("\r\n", "\n")
    norm = [line.strip().lower() for line in spaced.replace("\r", "\n").split("\n")]
    is_own = [not line.startswith(">") for line in norm]
    # Most lines cannot start a marker or a signature: one set lookup each rules them out.
    candidates = [index for index, line in enumerate(norm) if line[:1] in _MARKER_FIRST_CHARS]
    next_candidate = 0
    while (marker := _history_start(norm, candidates, next_candidate)) is not None:
        start, end, next_candidate = marker
        if norm[start].startswith(_ATTRIBUTION_STARTS) and _answers_inline(norm, end):
            # "On ... wrote:" then quotes with answers between them: only the quotes are history.
            is_own[start:end] = [False] * (end - start)
            continue
        is_own[start:] = [False] * (len(lines) - start)
        break
    _mark_signature(norm, is_own)
    _mark_sign_off(norm, is_own)
    own = [line for line, mine in zip(lines, is_own, strict=True) if mine]
    quoted = [line for line, mine in zip(lines, is_own, strict=True) if not mine]
    return ReplySplit(own_words="\n".join(own).strip(), quoted="\n".join(quoted).strip())


def _history_start(
    norm: list[str], candidates: list[int], first_candidate: int
) -> tuple[int, int, int] | None:
    """(first line, line after it, next candidate) of the first marker among the candidates."""
    for position in range(first_candidate, len(candidates)):
        index = candidates[position]
        if length := _marker_length(norm, index):
            following = position + 1
            while following < len(candidates) and candidates[following] < index + length:
                following += 1
            return index, index + length, following
    return None


def _marker_length(norm: list[str], index: int) -> int:
    """How many lines the history marker starting at ``index`` spans; 0 when there is none."""
    line = norm[index]
    if not line:
        return 0
    if _is_attribution(line):
        return 1
    if index + 1 < len(norm) and line.startswith(_ATTRIBUTION_STARTS):
        if _is_attribution(f"{line} {norm[index + 1]}"):
            return 2
    if _is_separator(line) or _is_underscore_rule_before_from(norm, index, line):
        return 1
    if _is_header_block(norm, index, line):
        return 1
    return 0


def _is_attribution(line: str) -> bool:
    if len(line) > _MAX_ATTRIBUTION_CHARS or not line.startswith(_ATTRIBUTION_STARTS):
        return False
    if line.endswith(_ATTRIBUTION_ENDS):
        return True
    # German clients put the author after the verb: "Am 3. März um 10:12 schrieb X <x@y>:".
    return line.startswith("am ") and " schrieb " in line and line.endswith(":")


def _is_separator(line: str) -> bool:
    if not line.startswith("--"):
        return False
    return line.strip("- ") in _SEPARATOR_WORDS


def _is_underscore_rule_before_from(norm: list[str], index: int, line: str) -> bool:
    if len(line) < 10 or line.strip("_"):
        return False
    following = _next_non_blank(norm, index + 1)
    return following is not None and norm[following].startswith(_FROM_LABELS)


def _is_header_block(norm: list[str], index: int, line: str) -> bool:
    """An Outlook-style "From: / Sent: / To: / Subject:" block starting at ``index``."""
    if not line.startswith(_FROM_LABELS):
        return False
    # The date line follows the sender at once (or after a wrapped sender line).
    if not any(item.startswith(_SENT_LABELS) for item in norm[index + 1 : index + 3]):
        return False
    below = norm[index + 1 : index + 1 + _HEADER_BLOCK_LINES]
    has_sent = any(item.startswith(_SENT_LABELS) for item in below)
    has_subject = any(item.startswith(_SUBJECT_LABELS) for item in below)
    return has_sent and has_subject


def _answers_inline(norm: list[str], position: int) -> bool:
    """The attribution ending before ``position`` opens ``>`` quotes, then unquoted answers."""
    first = _next_non_blank(norm, position)
    if first is None or not norm[first].startswith(">"):
        return False
    for index in range(first, len(norm)):
        line = norm[index]
        if not line or line.startswith(">"):
            continue
        return not _marker_length(norm, index) and not _is_signature_start(line)
    return False


def _mark_signature(norm: list[str], is_own: list[bool]) -> None:
    """Every own line from the first signature line on belongs to ``quoted``."""
    for index, line in enumerate(norm):
        if line[:1] in _SIGNATURE_FIRST_CHARS and is_own[index] and _is_signature_start(line):
            is_own[index:] = [False] * (len(norm) - index)
            return


def _mark_sign_off(norm: list[str], is_own: list[bool]) -> None:
    """A closing formula alone on a line ("Cordialement,", "Best regards") near the end of the
    own words, with words before it, opens the signature: it and the lines below go to
    ``quoted`` (the name, the title, the phone number)."""
    own = [index for index, mine in enumerate(is_own) if mine and norm[index]]
    for position in range(len(own) - 1, max(len(own) - 2 - _SIGN_OFF_TAIL_LINES, 0), -1):
        index = own[position]
        if len(norm[index]) > _SIGN_OFF_TAIL_CHARS:
            return  # a paragraph: the signature, if any, is below it
        if norm[index].rstrip(" ,.!;:") in _SIGN_OFFS:
            for below in range(index, len(is_own)):
                is_own[below] = False
            return


def _is_signature_start(line: str) -> bool:
    """``line`` (normalised) is a "-- " delimiter or a mobile client's signature."""
    if line == "--":
        return True
    return len(line) <= _MAX_SIGNATURE_LINE_CHARS and line.startswith(_SIGNATURE_STARTS)


def _next_non_blank(norm: list[str], position: int) -> int | None:
    for index in range(position, len(norm)):
        if norm[index]:
            return index
    return None

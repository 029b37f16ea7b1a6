"""MIME walking and text extraction: the parts of a message tree and its best readable text.

A received message's tree comes from the wide world and may be broken, deep or huge. The walk
here is iterative and capped (MAX_PARTS), the text decoded with each part's charset (an unknown
one read as UTF-8), HTML turned into text when there is no plain part, and every trouble met
recorded as a defect name rather than raised. :mod:`email_sender.inbound.parse` builds a
``ParsedMessage`` on top of it; the DSN reader walks reports with the same :func:`iter_parts`.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from email.message import EmailMessage, Message
from typing import Any

from email_sender.mail.html import html_to_text

MAX_TEXT_CHARS = 1_000_000
MAX_PARTS = 1_000
MAX_DEFECTS = 100

_SPACES = re.compile(r"\s+")


class Defects:
    """Defect names met while reading, in order, each once, capped."""

    def __init__(self) -> None:
        self._names: dict[str, None] = {}

    def add(self, name: str) -> None:
        if len(self._names) < MAX_DEFECTS:
            self._names.setdefault(name, None)

    def add_all(self, defects: Any) -> None:
        for defect in defects or ():
            self.add(type(defect).__name__)

    @property
    def names(self) -> list[str]:
        return list(self._names)


def body_text(message: Message) -> str:
    """The best readable text of ``message``: its text/plain body, else its HTML as text."""
    text, _ = best_text(message, Defects())
    return text


def iter_parts(message: Message, *, into_attached: bool = True) -> Iterator[Message]:
    """Every part of the tree, depth first, at most MAX_PARTS (no recursion: trees can be deep).

    With ``into_attached=False`` the walk does not enter attached messages (message/rfc822).
    """
    pending: list[Message] = [message]
    seen = 0
    while pending and seen < MAX_PARTS:
        part = pending.pop()
        seen += 1
        yield part
        if part is not message and not into_attached and part.get_content_maintype() == "message":
            continue
        if part.is_multipart():  # get_payload() on a leaf would decode it; a list is returned as is
            items = part.get_payload()
            pending.extend(reversed([item for item in items if isinstance(item, Message)]))


def best_text(message: Message, defects: Defects) -> tuple[str, str | None]:
    """(text, html): the text/plain body, else the HTML body as text; html None when absent."""
    plain_part = _body_part(message, "plain", defects)
    html_part = _body_part(message, "html", defects)
    html = _part_text(html_part, defects) if html_part is not None else None
    if plain_part is not None:
        text = _part_text(plain_part, defects)
    elif html is not None:
        text = html_to_text(html)
    else:
        text = ""
    return text[:MAX_TEXT_CHARS], html[:MAX_TEXT_CHARS] if html is not None else None


def _body_part(message: Message, subtype: str, defects: Defects) -> Message | None:
    try:
        if isinstance(message, EmailMessage):
            return message.get_body(preferencelist=(subtype,))
    except Exception:  # get_body walks the tree and trips on broken multiparts
        defects.add("UnreadableBodyDefect")
    # A broken or absent tree: the first part of that type, not inside an attached message.
    for part in iter_parts(message, into_attached=False):
        if part.get_content_type() == f"text/{subtype}" and not _is_attachment(part):
            return part
    return None


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment"
    except Exception:  # a malformed Content-Disposition: read it as inline
        return False


def _part_text(part: Message, defects: Defects) -> str:
    """The part's content decoded with its charset (errors replaced); "" for a multipart."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # decoding a broken transfer encoding can fail in corner cases
        defects.add("UnreadablePartDefect")
        return ""
    if not isinstance(payload, bytes):
        return ""
    charset = _charset(part, defects)
    text = payload[: MAX_TEXT_CHARS * 4].decode(charset, "replace")
    return clean_text(text.replace("\r\n", "\n").replace("\r", "\n"))


def _charset(part: Message, defects: Defects) -> str:
    try:
        charset = part.get_content_charset() or "us-ascii"
        codecs.lookup(charset)
        return charset
    except (LookupError, ValueError, TypeError):
        defects.add("UnknownCharsetDefect")
        return "utf-8"


def clean_text(text: str) -> str:
    """Text safe to store as UTF-8: lone surrogates become U+FFFD, NUL characters go."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\0", "")

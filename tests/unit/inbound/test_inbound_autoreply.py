"""Auto-reply detection on the samples and on single signals; return dates in four languages."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from email_sender.inbound.autoreply import AutoReply, detect, parse_return_date
from email_sender.inbound.parse import ParsedMessage, parse_message

FIXTURES = Path(__file__).parents[2] / "fixtures" / "inbound"
LIMIT = 10_000_000
REFERENCE = datetime.date(2025, 2, 28)


def parsed_sample(name: str) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes(), max_bytes=LIMIT)


def parsed(headers: str, body: str = "Hello,\n\nThanks for your message.\n") -> ParsedMessage:
    raw = f"From: someone@client.example\nTo: sales@example.org\n{headers}\n\n{body}"
    return parse_message(raw.encode(), max_bytes=LIMIT)


@pytest.mark.parametrize("name", ["ooo_fr.eml", "ooo_en.eml", "ooo_de.eml", "ooo_es.eml"])
def test_out_of_office_samples_in_four_languages(name: str) -> None:
    found = detect(parsed_sample(name))
    assert found == AutoReply(
        kind="out_of_office",
        reason="header:Auto-Submitted=auto-replied",
        return_date=datetime.date(2025, 3, 3),
    )


def test_ticket_acknowledgement_is_an_auto_reply_not_an_absence() -> None:
    found = detect(parsed_sample("autoreply_ticket.eml"))
    assert found == AutoReply(kind="auto_reply", reason="header:X-Autoreply", return_date=None)


@pytest.mark.parametrize(
    "name",
    ["reply_fr.eml", "reply_en_outlook.eml", "eight_bit_header.eml", "malformed_mime.eml"],
)
def test_human_replies_are_not_auto_replies(name: str) -> None:
    assert detect(parsed_sample(name)) is None


@pytest.mark.parametrize(
    "name",
    ["postfix_hard.eml", "postfix_delayed.eml", "gmail_hard.eml", "m365_hard.eml",
     "exim_hard.eml", "plain_bounce.eml", "arf_complaint.eml"],
)  # fmt: skip
def test_bounces_and_complaints_are_not_auto_replies(name: str) -> None:
    # They carry Auto-Submitted and a null sender, yet they are reports.
    assert detect(parsed_sample(name)) is None


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("Auto-Submitted: auto-generated", "header:Auto-Submitted=auto-generated"),
        ("Auto-Submitted: Auto-Replied; owner-email=x@y", "header:Auto-Submitted=auto-replied"),
        ("X-Autoreply: yes", "header:X-Autoreply"),
        ("X-Autorespond: Thanks", "header:X-Autorespond"),
        ("Precedence: bulk", "header:Precedence=bulk"),
        ("Precedence: junk", "header:Precedence=junk"),
        ("Precedence: list", "header:Precedence=list"),
        ("X-Precedence: auto_reply", "header:X-Precedence=auto_reply"),
        ("Return-Path: <>", "header:Return-Path=<>"),
        ("Subject: Out of Office: your message", "subject:Out of Office"),
        ("Subject: Automatic reply: Hello", "subject:Automatic reply"),
        ("Subject: Autoreply: Hello", "subject:Autoreply"),
        ("Subject: =?utf-8?q?R=C3=A9ponse_automatique_=3A_Hello?=", "subject:Réponse automatique"),
        ("Subject: Absent du bureau", "subject:Absent du bureau"),
        ("Subject: Abwesenheitsnotiz: Angebot", "subject:Abwesenheitsnotiz"),
        ("Subject: Abwesend bis Montag", "subject:Abwesend"),
        ("Subject: =?utf-8?q?Respuesta_autom=C3=A1tica=3A_Hola?=", "subject:Respuesta automática"),
        ("Subject: Fuera de la oficina", "subject:Fuera de la oficina"),
    ],
)
def test_each_signal_alone_is_enough(headers: str, reason: str) -> None:
    found = detect(parsed(headers))
    assert found is not None
    assert found.reason == reason
    assert found.kind in {"auto_reply", "out_of_office"}


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: no",
        "X-Auto-Response-Suppress: All",  # Outlook sets it on ordinary mail too
        "Precedence: first-class",
        "Subject: Re: absence de Paul lundi",  # a human answering about an absence
        "Subject: Re: Out of office policy",
        "X-Autoreply: no",
    ],
)
def test_weak_or_negative_signals_alone_are_not_enough(headers: str) -> None:
    assert detect(parsed(headers)) is None


def test_weak_signal_is_listed_after_a_strong_one() -> None:
    found = detect(parsed("Precedence: bulk\nX-Auto-Response-Suppress: All"))
    assert found is not None and found.reason == "header:Precedence=bulk"


@pytest.mark.parametrize(
    ("subject", "body", "kind"),
    [
        ("Automatic reply: Hello", "I am on holiday, back on 10 March.", "out_of_office"),
        ("Automatic reply: Hello", "Thank you, we received your request.", "auto_reply"),
        ("Autoreply", "Je suis en congés jusqu'au 12/03.", "out_of_office"),
        ("Automatische Antwort", "Ich bin im Urlaub.", "out_of_office"),
        ("Respuesta automática", "Estoy de vacaciones.", "out_of_office"),
        ("Respuesta automática", "Hemos recibido su mensaje.", "auto_reply"),
        ("Out of Office", "", "out_of_office"),
    ],
)
def test_kind_comes_from_subject_or_text(subject: str, body: str, kind: str) -> None:
    raw = (
        f"From: a@client.example\nSubject: {subject}\nAuto-Submitted: auto-replied\n"
        f"Date: Fri, 28 Feb 2025 09:00:00 +0000\nContent-Type: text/plain; charset=utf-8\n\n"
        f"{body}\n"
    )
    found = detect(parse_message(raw.encode(), max_bytes=LIMIT))
    assert found is not None and found.kind == kind


def test_return_date_uses_the_message_date_as_reference() -> None:
    raw = (
        b"From: a@client.example\nSubject: Out of Office\nDate: Mon, 15 Dec 2025 09:00:00 +0000\n"
        b"\nI am away and back on January 5th.\n"
    )
    found = detect(parse_message(raw, max_bytes=LIMIT))
    assert found is not None and found.return_date == datetime.date(2026, 1, 5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # French
        ("Je suis absent, de retour le 3 mars.", datetime.date(2025, 3, 3)),
        ("Je serai de retour le lundi 3 mars 2025.", datetime.date(2025, 3, 3)),
        ("Absent à partir du 03/03, joignable ensuite.", datetime.date(2025, 3, 3)),
        ("En congés jusqu'au 1er avril.", datetime.date(2025, 4, 1)),
        ("De retour le 5 février.", datetime.date(2026, 2, 5)),  # already past: next year
        # English
        ("I will be back on March 3rd.", datetime.date(2025, 3, 3)),
        ("Returning on 3 March.", datetime.date(2025, 3, 3)),
        ("Out until 2025-03-03.", datetime.date(2025, 3, 3)),
        ("Back in the office on Monday, March 10, 2025.", datetime.date(2025, 3, 10)),
        # German
        ("Ich bin ab dem 3. März wieder im Büro.", datetime.date(2025, 3, 3)),
        ("Abwesend bis zum 14.03.2025.", datetime.date(2025, 3, 14)),
        # Spanish
        ("Fuera de la oficina hasta el 3 de marzo.", datetime.date(2025, 3, 3)),
        ("Estaré de vuelta el 7 de abril de 2025.", datetime.date(2025, 4, 7)),
    ],
)
def test_parse_return_date(text: str, expected: datetime.date) -> None:
    assert parse_return_date(text, reference=REFERENCE) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Thank you for your message.",
        "Back soon.",
        "de retour le 31 février",  # not a date
        "The meeting on 3 March went well.",  # a date, but not a return
    ],
)
def test_no_return_date(text: str) -> None:
    assert parse_return_date(text, reference=REFERENCE) is None


def test_parse_return_date_is_fast_on_long_text() -> None:
    text = "back back until ab bis " * 50_000
    assert parse_return_date(text, reference=REFERENCE) is None

"""split_reply on the samples and on each client's way of quoting, and its cost on hostile text."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_sender.inbound.parse import parse_message
from email_sender.inbound.quotes import ReplySplit, split_reply

FIXTURES = Path(__file__).parents[2] / "fixtures" / "inbound"


def sample_text(name: str) -> str:
    return parse_message((FIXTURES / name).read_bytes(), max_bytes=10_000_000).text


def test_french_gmail_reply_with_signature_and_quotes() -> None:
    split = split_reply(sample_text("reply_fr.eml"))
    assert split.own_words == (
        "Bonjour,\n\nMerci pour votre proposition, elle m'intéresse. Pouvez-vous m'envoyer "
        "les tarifs pour 50 licences ?"
    )
    assert split.quoted.startswith("Bien cordialement,\nClaire\n\n-- \nClaire Martin")
    assert "a écrit :" in split.quoted
    assert "> Voici notre offre pour mars." in split.quoted


def test_english_outlook_reply_with_original_message_block() -> None:
    split = split_reply(sample_text("reply_en_outlook.eml"))
    assert split.own_words == (
        "Hi,\n\nTuesday at 2pm works for me. Could you send an invite?"
    )
    assert split.quoted.startswith("Thanks,\nJohn\n\nGet Outlook for iOS")
    assert "Shall we meet next week?" in split.quoted


HISTORY = "Hello, here is our offer.\nBest regards"


@pytest.mark.parametrize(
    "marker",
    [
        "Le lun. 3 mars 2025 à 10:12, Sales <sales@example.org> a écrit :",
        "Le lun. 3 mars 2025 à 10:12, Sales <sales@example.org> a écrit\u00a0:",
        "Le lun. 3 mars 2025 à 10:12, Sales Team\n<sales@example.org> a écrit :",  # wrapped
        "On Mon, Mar 3, 2025 at 10:12 AM Sales <sales@example.org> wrote:",
        "On Mon, Mar 3, 2025 at 10:12 AM Sales Team <sales@example.org>\nwrote:",  # wrapped
        "Am Mo., 3. März 2025 um 10:12 Uhr schrieb Sales <sales@example.org>:",
        "Am 03.03.2025 um 10:12 schrieb Sales:",
        "El lun, 3 mar 2025 a las 10:12, Sales (<sales@example.org>) escribió:",
        "-----Original Message-----",
        "-----Message d'origine-----",
        "-----Ursprüngliche Nachricht-----",
        "-----Mensaje original-----",
        "________________________________\nFrom: Sales <sales@example.org>",
        "________________________________\nDe : Sales <sales@example.org>",
        "From: Sales <sales@example.org>\nSent: Monday, March 3, 2025 10:12\nTo: Claire\n"
        "Subject: Offer",
        "De : Sales <sales@example.org>\nEnvoyé : lundi 3 mars 2025 10:12\nÀ : Claire\n"
        "Objet : Offre",
        "Von: Sales <sales@example.org>\nGesendet: Montag, 3. März 2025 10:12\nAn: Katrin\n"
        "Betreff: Angebot",
        "De: Sales <sales@example.org>\nEnviado: lunes, 3 de marzo de 2025 10:12\nPara: Lucía\n"
        "Asunto: Oferta",
    ],
)
def test_history_markers_cut_the_reply(marker: str) -> None:
    text = f"Yes, I am interested.\nCall me tomorrow.\n\n{marker}\n\n{HISTORY}\n"
    split = split_reply(text)
    assert split.own_words == "Yes, I am interested.\nCall me tomorrow."
    assert split.quoted.endswith(HISTORY)
    assert split.quoted.startswith(marker.split("\n")[0].strip())


def test_bottom_quote_block_without_attribution() -> None:
    split = split_reply("Sounds good.\n\n> Shall we meet?\n> Next week?\n")
    assert split == ReplySplit(own_words="Sounds good.", quoted="> Shall we meet?\n> Next week?")


def test_interleaved_answers_are_own_words() -> None:
    text = (
        "On Mon, Mar 3, 2025 at 10:12 AM Sales <sales@example.org> wrote:\n"
        "> Are you free on Tuesday?\n"
        "Yes, after 2pm.\n"
        "> How many licences?\n"
        "Fifty.\n"
    )
    split = split_reply(text)
    assert split.own_words == "Yes, after 2pm.\nFifty."
    assert "> Are you free on Tuesday?" in split.quoted
    assert split.quoted.startswith("On Mon")


@pytest.mark.parametrize(
    "signature",
    [
        "-- \nClaire Martin\n+33 1 23 45 67 89",
        "Envoyé de mon iPhone",
        "Sent from my iPhone",
        "Sent from my Android device",
        "Get Outlook for Android",
        "Von meinem iPhone gesendet",
        "Enviado desde mi iPhone",
        "Cordialement,\nClaire Martin\nProgrammatrice, La Cigale\n01 23 45 67 89",
        "Bien à vous",
        "Best regards,\nJohn Smith\nThe Venue",
        "Mit freundlichen Grüßen\nAnna",
        "Saludos,\nLucía",
    ],
)
def test_signatures_are_not_own_words(signature: str) -> None:
    split = split_reply(f"Ok for me.\n\n{signature}\n")
    assert split == ReplySplit(own_words="Ok for me.", quoted=signature)


@pytest.mark.parametrize(
    "text",
    [
        "On Monday I will call you, as we said.",  # starts like an attribution, is not one
        "From: our side, everything is ready.\nSubject to your approval.",  # not a header block
        "Le prix me convient. Qui a écrit ce devis ?",
        "-- not a signature, just a dash line with words",
        "Thanks!",  # a sign-off with nothing before it is the whole reply
        "Merci, c'est confirmé pour le 3 mars.",  # not a sign-off alone on its line
        "Regards\n" + "then a paragraph of real words, long enough to be one." * 3,
    ],
)
def test_ordinary_text_is_kept_whole(text: str) -> None:
    assert split_reply(text) == ReplySplit(own_words=text, quoted="")


def test_empty_and_crlf_text() -> None:
    assert split_reply("") == ReplySplit(own_words="", quoted="")
    split = split_reply("Fine.\r\n\r\n> question\r\n")
    assert split == ReplySplit(own_words="Fine.", quoted="> question")


HOSTILE = {
    "one enormous line": "a" * 1_000_000,
    "an attribution that never ends": "On " + "x " * 500_000,
    "many interleaved attributions": "On x wrote:\n> q\nanswer\n" * 45_000,
    "a rule then blank lines": "________________\n" + "\n" * 1_000_000,
    "header block starts that never complete": "From: a\nSent: b\n" * 60_000,
    "quote marks": "> " * 500_000,
    "wrapped attribution starts": "Le \n" * 250_000,
    "signature-like lines": "-- \nSent from my x\n" * 50_000,
}


# A quadratic pass over a megabyte takes minutes; the timeout fails such a regression without
# timing anything on a busy machine.
@pytest.mark.timeout(10)
@pytest.mark.parametrize("hostile", list(HOSTILE.values()), ids=list(HOSTILE))
def test_one_megabyte_of_hostile_text_is_split_in_one_pass(hostile: str) -> None:
    split = split_reply(hostile)
    assert len(split.own_words) + len(split.quoted) <= len(hostile)

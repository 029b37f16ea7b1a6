"""parse_message on the sample messages, its limits, and its promise to raise nothing else."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_sender.errors import PayloadTooLarge, ValidationError
from email_sender.inbound.mime import MAX_TEXT_CHARS
from email_sender.inbound.parse import (
    MAX_HEADER_VALUE_CHARS,
    MAX_HEADERS,
    message_ids,
    normalise_message_id,
    normalise_subject,
    parse_message,
)
from email_sender.mail.html import html_to_text

FIXTURES = Path(__file__).parents[2] / "fixtures" / "inbound"
SAMPLES = sorted(FIXTURES.glob("*.eml"))
LIMIT = 10_000_000


def sample(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_sample_parses_without_defects_except_the_broken_ones() -> None:
    assert len(SAMPLES) >= 16
    for path in SAMPLES:
        parsed = parse_message(path.read_bytes(), max_bytes=LIMIT)
        assert parsed.size == len(path.read_bytes())
        if path.name not in {"malformed_mime.eml", "eight_bit_header.eml"}:
            assert parsed.defects == [], path.name


def test_reply_headers_are_decoded_and_normalised() -> None:
    parsed = parse_message(sample("reply_fr.eml"), max_bytes=LIMIT)
    assert parsed.message_id == "<CAF=reply-fr-1@mail.gmail.com>"
    assert parsed.in_reply_to == ["<test-original-1@example.org>"]
    assert parsed.references == ["<test-thread-0@example.org>", "<test-original-1@example.org>"]
    assert parsed.from_addr == "claire.martin@client.example.fr"
    assert parsed.from_name == "Claire Martin"
    assert parsed.to_addrs == ["sales@example.org"]
    assert parsed.subject == "Re: Notre offre pour mars"
    assert parsed.date == datetime(2025, 3, 3, 10, 2, 17, tzinfo=UTC).timestamp()
    assert parsed.return_path == "claire.martin@client.example.fr"
    assert "elle m'intéresse" in parsed.text  # quoted-printable UTF-8 decoded
    assert "\r" not in parsed.text
    assert parsed.html is None
    assert parsed.header("in-reply-to") == "<test-original-1@example.org>"


def test_encoded_words_and_a_latin1_body_are_decoded() -> None:
    parsed = parse_message(sample("ooo_de.eml"), max_bytes=LIMIT)
    assert parsed.from_name == "Katrin Müller"
    assert "ab dem 3. März wieder" in parsed.text
    spanish = parse_message(sample("ooo_es.eml"), max_bytes=LIMIT)
    assert spanish.subject == "Respuesta automática: Nuestra oferta"


def test_null_return_path_is_the_empty_string_and_absent_is_none() -> None:
    assert parse_message(sample("postfix_hard.eml"), max_bytes=LIMIT).return_path == ""
    for null_sender in (b"<>", b"< >", b""):
        raw = b"From: a@b.c\nReturn-Path: " + null_sender + b"\n\nbody\n"
        assert parse_message(raw, max_bytes=LIMIT).return_path == ""
    raw = b"From: a@b.c\nReturn-Path: <Bounces+X@Example.org>\n\nbody\n"
    assert parse_message(raw, max_bytes=LIMIT).return_path == "bounces+x@example.org"
    assert parse_message(sample("malformed_mime.eml"), max_bytes=LIMIT).return_path is None


def test_html_only_message_gives_text_from_the_html() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: hi\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{color:red}</style></head><body><p>Hello&nbsp;<b>there</b></p>"
        b"<p>Second &amp; last</p><script>alert(1)</script></body></html>"
    )
    parsed = parse_message(raw, max_bytes=LIMIT)
    assert parsed.text == "Hello there\n\nSecond & last"
    assert parsed.html is not None and "<b>there</b>" in parsed.html


def test_multipart_alternative_prefers_the_plain_part() -> None:
    parsed = parse_message(sample("reply_en_outlook.eml"), max_bytes=LIMIT)
    assert parsed.text.startswith("Hi,\n\nTuesday at 2pm works for me.")
    assert parsed.html is not None and "<p>Hi,</p>" in parsed.html


def test_the_text_of_a_bounce_is_the_notice_not_the_returned_message() -> None:
    parsed = parse_message(sample("postfix_hard.eml"), max_bytes=LIMIT)
    assert "could not\nbe delivered" in parsed.text
    assert "here is our offer" not in parsed.text


def test_raw_eight_bit_header_is_read_as_latin1_and_flagged() -> None:
    parsed = parse_message(sample("eight_bit_header.eml"), max_bytes=LIMIT)
    assert parsed.subject == "Re: Información sobre el café"
    assert parsed.from_name == "José Pérez"
    assert parsed.text == "Gracias, me interesa el café.\n"
    assert "EightBitHeaderDefect" in parsed.defects


def test_raw_utf8_header_is_read_as_utf8() -> None:
    raw = "From: a@example.com\nSubject: Réunion à 10h\n\nbody\n".encode()
    parsed = parse_message(raw, max_bytes=LIMIT)
    assert parsed.subject == "Réunion à 10h"


def test_broken_multipart_and_bad_base64_become_defects_and_best_effort_text() -> None:
    parsed = parse_message(sample("malformed_mime.eml"), max_bytes=LIMIT)
    assert "CloseBoundaryNotFoundDefect" in parsed.defects
    assert "InvalidBase64CharactersDefect" in parsed.defects
    assert parsed.text.startswith("Yes, please send the prices.")


def test_unknown_charset_is_a_defect_and_text_is_still_given() -> None:
    raw = b"From: a@example.com\nContent-Type: text/plain; charset=x-klingon\n\nQapla\xe9\n"
    parsed = parse_message(raw, max_bytes=LIMIT)
    assert "UnknownCharsetDefect" in parsed.defects
    assert parsed.text.startswith("Qapla")


def test_subject_control_characters_are_removed() -> None:
    raw = b"From: a@example.com\nSubject: =?utf-8?q?one=07two=0D=0Athree?=\n\nx\n"
    assert parse_message(raw, max_bytes=LIMIT).subject == "one two three"


def test_missing_and_broken_fields_are_none_or_empty() -> None:
    raw = b"Subject: only this\nDate: not a date\nMessage-ID: bare-id@host\n\nbody\n"
    parsed = parse_message(raw, max_bytes=LIMIT)
    assert parsed.from_addr is None and parsed.from_name is None
    assert parsed.to_addrs == []
    assert parsed.date is None
    assert parsed.message_id == "<bare-id@host>"
    assert parsed.return_path is None


def test_dedupe_key_is_stable_and_depends_on_id_and_body() -> None:
    raw = sample("reply_fr.eml")
    first = parse_message(raw, max_bytes=LIMIT)
    assert parse_message(raw, max_bytes=LIMIT).dedupe_key == first.dedupe_key
    body = raw.split(b"\n\n", 1)[1]
    assert first.content_hash == hashlib.sha256(body).hexdigest()
    assert (
        first.dedupe_key
        == hashlib.sha256(
            b"<CAF=reply-fr-1@mail.gmail.com>\0" + first.content_hash.encode()
        ).hexdigest()
    )
    other_id = raw.replace(b"reply-fr-1@", b"reply-fr-2@")
    other_body = raw.replace(b"50 licences", b"60 licences")
    assert parse_message(other_id, max_bytes=LIMIT).dedupe_key != first.dedupe_key
    assert parse_message(other_body, max_bytes=LIMIT).dedupe_key != first.dedupe_key


def test_too_large_names_the_size_and_the_limit() -> None:
    raw = sample("reply_fr.eml")
    with pytest.raises(PayloadTooLarge) as caught:
        parse_message(raw, max_bytes=100)
    assert caught.value.field == "message"
    assert str(len(raw)) in caught.value.reason and "100" in caught.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n",
        b"just some text\nwithout headers\n",
        b"\n\nFrom: a@b.c\n",
        b"X-Custom: 1\nX-Other: 2\n\nbody\n",
        b"\x00\x01\x02binary",
    ],
)
def test_not_a_message_is_a_validation_error(raw: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(raw, max_bytes=LIMIT)
    assert caught.value.field == "message"


def test_a_bounce_lacking_from_and_id_is_still_a_message() -> None:
    raw = b"Received: from mx by here\nSubject: failure notice\n\nsorry\n"
    assert parse_message(raw, max_bytes=LIMIT).subject == "failure notice"


def test_header_count_and_value_length_are_capped() -> None:
    many = b"".join(b"X-H%d: v\n" % index for index in range(MAX_HEADERS + 50))
    long_value = b"X-Long: " + b"a" * (MAX_HEADER_VALUE_CHARS * 2) + b"\n"
    parsed = parse_message(b"From: a@b.c\n" + long_value + many + b"\nbody\n", max_bytes=LIMIT)
    assert len(parsed.headers) == MAX_HEADERS
    assert len(parsed.header("x-long") or "") == MAX_HEADER_VALUE_CHARS
    assert "TooManyHeadersDefect" in parsed.defects


def test_text_is_capped() -> None:
    raw = b"From: a@b.c\n\n" + b"word " * (MAX_TEXT_CHARS // 4)
    assert len(parse_message(raw, max_bytes=LIMIT).text) == MAX_TEXT_CHARS


def test_deeply_nested_multiparts_do_not_escape_as_recursion_errors() -> None:
    depth = 3_000
    raw = b"From: a@b.c\nContent-Type: multipart/mixed; boundary=b0\n\n"
    for level in range(1, depth):
        raw += b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (level - 1, level)
    raw += b"--b%d\nContent-Type: text/plain\n\ndeep\n" % (depth - 1)
    parsed = parse_message(raw, max_bytes=LIMIT)
    assert parsed.from_addr == "a@b.c"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Hello", "hello"),
        ("RE : Re: FW: Hello", "hello"),
        ("Fwd: TR: Réf. : AW: WG: RV: Hello", "hello"),
        ("[EXT] Re: [Ticket #12]  Hello   World ", "hello world"),
        ("Re[2]: Straße", "strasse"),
        ("Réunion demain", "réunion demain"),
        ("Regarding the offer", "regarding the offer"),
        ("", ""),
    ],
)
def test_normalise_subject(subject: str, expected: str) -> None:
    assert normalise_subject(subject) == expected


def test_normalise_subject_is_linear_on_long_prefix_runs() -> None:
    assert normalise_subject("Re: " * 200_000 + "End") == "end"


def test_message_id_helpers() -> None:
    assert normalise_message_id("  <a@b>  (comment)") == "<a@b>"
    assert normalise_message_id("") is None
    assert message_ids("<a@b>\n <c@d> <a@b>") == ["<a@b>", "<c@d>"]
    assert message_ids("x@y z") == ["<x@y>"]


def test_html_to_text_keeps_line_structure() -> None:
    assert html_to_text("<div>one</div><div>two<br>three</div>") == "one\n\ntwo\nthree"


MUTATION = st.lists(
    st.tuples(
        st.integers(min_value=0),
        st.integers(min_value=0, max_value=255),
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
    ),
    min_size=1,
    max_size=8,
)


def mutate(raw: bytes, edits: list[tuple[int, int, str]]) -> bytes:
    data = bytearray(raw)
    for position, value, kind in edits:
        if not data:
            break
        index = position % len(data)
        if kind == "flip":
            data[index] = value
        elif kind == "insert":
            data.insert(index, value)
        elif kind == "delete":
            del data[index]
        else:
            del data[index:]
    return bytes(data)


def parse_or_refuse(raw: bytes) -> None:
    try:
        parsed = parse_message(raw, max_bytes=LIMIT)
    except ValidationError:
        return
    # Everything kept must be storable as UTF-8.
    for text in (parsed.text, parsed.subject, *(value for _, value in parsed.headers)):
        text.encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_raise_nothing_but_validation_error(raw: bytes) -> None:
    parse_or_refuse(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_after_a_header_raise_nothing(rest: bytes) -> None:
    # Past the "is it a message" check, so the MIME parser itself meets the noise.
    parse_or_refuse(b"From: a@b.c\nContent-Type: multipart/mixed; boundary=x\n" + rest)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), MUTATION)
def test_mutated_samples_raise_nothing_but_validation_error(
    path: Path, edits: list[tuple[int, int, str]]
) -> None:
    parse_or_refuse(mutate(path.read_bytes(), edits))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_arbitrary_header_values_raise_nothing(value: str) -> None:
    for name in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "References",
        "Return-Path",
        "Content-Type",
    ):
        raw = f"From: a@b.c\n{name}: {value}\n\nbody\n".encode("utf-8", "surrogatepass")
        parse_or_refuse(raw)


@pytest.mark.timeout(20)
def test_a_huge_folded_header_is_cut_before_the_header_parser_sees_it() -> None:
    folded = "\r\n ".join(["someone@example.org,"] * 150_000)  # about 3.3 MB
    raw = (f"From: Venue <venue@example.org>\r\nTo: {folded}\r\nSubject: Date\r\n\r\nOui\r\n")
    parsed = parse_message(raw.encode(), max_bytes=10**8)
    assert "HeaderTooLongDefect" in parsed.defects
    assert (parsed.from_addr, parsed.subject) == ("venue@example.org", "Date")
    assert sum(len(value) for _, value in parsed.headers) < 64 * 1024


def test_headers_past_the_block_limit_are_left_out_with_a_defect() -> None:
    filler = "".join(f"X-Filler-{n}: {'v' * 8000}\r\n" for n in range(40))
    raw = f"Subject: first\r\n{filler}From: late@example.org\r\n\r\nbody\r\n".encode()
    parsed = parse_message(raw, max_bytes=10**8)
    assert parsed.subject == "first"
    assert "HeaderBlockTooLongDefect" in parsed.defects

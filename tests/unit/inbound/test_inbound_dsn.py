"""parse_report on real-world shaped bounces and complaints, and on what is neither."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_sender.errors import ValidationError
from email_sender.inbound.autoreply import detect
from email_sender.inbound.dsn import Bounce, BouncedRecipient, Complaint, parse_report
from email_sender.inbound.parse import parse_message
from email_sender.inbound.quotes import split_reply

FIXTURES = Path(__file__).parents[2] / "fixtures" / "inbound"
LIMIT = 10_000_000


def report_of(raw: bytes) -> Bounce | Complaint | None:
    return parse_report(parse_message(raw, max_bytes=LIMIT).message)


def sample_report(name: str) -> Bounce | Complaint | None:
    return report_of((FIXTURES / name).read_bytes())


def bounce_of(name: str) -> Bounce:
    report = sample_report(name)
    assert isinstance(report, Bounce), name
    return report


@pytest.mark.parametrize(
    ("name", "address", "status", "original_id", "reporting_mta"),
    [
        ("postfix_hard.eml", "nobody@example.net", "5.1.1", 1, "mail.example.org"),
        ("exim_hard.eml", "ghost@example.co.uk", "5.0.0", 3, "smtp.example.org"),
        ("gmail_hard.eml", "no.such.user@gmail.com", "5.1.1", 4, "googlemail.com"),
        (
            "m365_hard.eml",
            "former.employee@contoso.com",
            "5.1.10",
            5,
            "AM0PR01MB1234.eurprd01.prod.exchangelabs.com",
        ),
    ],
)
def test_hard_bounces_name_the_recipient_status_and_returned_message(
    name: str, address: str, status: str, original_id: int, reporting_mta: str
) -> None:
    bounce = bounce_of(name)
    assert [recipient.address for recipient in bounce.recipients] == [address]
    recipient = bounce.recipients[0]
    assert recipient.status == status
    assert recipient.action == "failed"
    assert recipient.permanent
    assert bounce.original_message_id == f"<test-original-{original_id}@example.org>"
    assert bounce.original_headers["Message-ID"] == bounce.original_message_id
    assert bounce.original_headers["From"] == "Sales Team <sales@example.org>"
    assert bounce.reporting_mta == reporting_mta


def test_postfix_details_diagnostic_and_remote_mta() -> None:
    recipient = bounce_of("postfix_hard.eml").recipients[0]
    assert recipient.diagnostic == (
        "smtp; 550 5.1.1 <nobody@example.net>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert recipient.remote_mta == "mx1.example.net"
    assert bounce_of("postfix_hard.eml").original_headers["Subject"] == "Our offer for March"


def test_delayed_is_not_permanent_and_headers_only_return_is_read() -> None:
    bounce = bounce_of("postfix_delayed.eml")
    recipient = bounce.recipients[0]
    assert (recipient.address, recipient.action, recipient.status) == (
        "slow@example.com",
        "delayed",
        "4.4.1",
    )
    assert not recipient.permanent
    assert bounce.original_message_id == "<test-original-2@example.org>"  # text/rfc822-headers


def test_plain_bounce_without_report_part_is_read_from_the_text() -> None:
    bounce = bounce_of("plain_bounce.eml")
    assert bounce.recipients[0].address == "left.company@old-host.example"
    assert bounce.recipients[0].status == "5.1.1"
    assert bounce.recipients[0].permanent
    assert bounce.recipients[0].diagnostic is not None
    assert "User unknown" in bounce.recipients[0].diagnostic
    assert bounce.original_message_id == "<test-original-7@example.org>"


def test_arf_complaint() -> None:
    complaint = sample_report("arf_complaint.eml")
    assert complaint == Complaint(
        feedback_type="abuse",
        user_agent="Yahoo!-Mail-Feedback/2.0",
        original_rcpt_to=["annoyed.user@yahoo.com"],
        original_mail_from="bounces+0f8fad5bd9cb469fa16570867728950e-1a2b3c4d5e@example.org",
        original_message_id="<test-original-6@example.org>",
    )


def test_complaint_without_original_rcpt_to_uses_the_returned_to() -> None:
    raw = (FIXTURES / "arf_complaint.eml").read_bytes()
    raw = raw.replace(b"Original-Rcpt-To: <Annoyed.User@yahoo.com>\n", b"")
    complaint = report_of(raw)
    assert isinstance(complaint, Complaint)
    assert complaint.original_rcpt_to == ["annoyed.user@yahoo.com"]


@pytest.mark.parametrize(
    "name",
    [
        "reply_fr.eml",
        "reply_en_outlook.eml",
        "ooo_fr.eml",
        "ooo_en.eml",
        "ooo_de.eml",
        "ooo_es.eml",
        "autoreply_ticket.eml",
        "malformed_mime.eml",
        "eight_bit_header.eml",
    ],
)
def test_replies_and_auto_replies_are_not_reports(name: str) -> None:
    assert sample_report(name) is None


def test_a_mailer_daemon_message_without_code_is_not_a_bounce() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail Returned to Sender\n\n"
        b"Something went wrong with <someone@example.com>, sorry.\n"
    )
    assert report_of(raw) is None


def test_a_mailer_daemon_message_without_recipient_is_not_a_bounce() -> None:
    raw = b"From: postmaster@mx.example\nSubject: Mail delivery failed\n\n550 5.1.1 rejected\n"
    assert report_of(raw) is None


def test_undeliverable_subject_alone_is_enough_to_read_the_text() -> None:
    raw = (
        b"From: Exchange <exchange@corp.example>\nSubject: Undeliverable: Hello\n\n"
        b"Delivery has failed to these recipients or groups:\n\nbob@corp.example\n"
        b"Remote server returned '550 5.4.1 Recipient address rejected: Access denied'\n"
    )
    bounce = report_of(raw)
    assert isinstance(bounce, Bounce)
    assert bounce.recipients[0].address == "bob@corp.example"
    assert bounce.recipients[0].status == "5.4.1"


def test_basic_smtp_code_gives_a_status_class() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example\nSubject: failure notice\n\n"
        b"<gone@old.example>:\nRemote host said: 550 no such mailbox here\n"
    )
    bounce = report_of(raw)
    assert isinstance(bounce, Bounce)
    assert (bounce.recipients[0].address, bounce.recipients[0].status) == (
        "gone@old.example",
        "5.0.0",
    )


def test_base64_delivery_status_part_and_original_recipient_fallback() -> None:
    fields = (
        b"Reporting-MTA: dns; mx.example\n\n"
        b"Original-Recipient: rfc822; <Carol@Example.com>\nAction: failed\nStatus: 5.2.2\n"
    )
    raw = (
        b"From: MAILER-DAEMON@mx.example\nSubject: Returned mail\nContent-Type: multipart/report;"
        b" report-type=delivery-status; boundary=B\n\n--B\nContent-Type: text/plain\n\nFailed.\n"
        b"--B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(fields)
        + b"--B--\n"
    )
    bounce = report_of(raw)
    assert isinstance(bounce, Bounce)
    assert bounce.recipients == [
        BouncedRecipient("carol@example.com", "failed", "5.2.2", None, None)
    ]
    assert bounce.recipients[0].permanent
    assert bounce.original_message_id is None and bounce.original_headers == {}


def test_several_recipients_in_one_report() -> None:
    raw = (FIXTURES / "postfix_hard.eml").read_bytes()
    second = b"\nFinal-Recipient: rfc822; other@example.net\nAction: delayed\nStatus: 4.2.2\n"
    raw = raw.replace(
        b"    rejected: User unknown in virtual mailbox table\n",
        b"    rejected: User unknown in virtual mailbox table\n" + second,
        1,
    )
    bounce = report_of(raw)
    assert isinstance(bounce, Bounce)
    assert [(item.address, item.permanent) for item in bounce.recipients] == [
        ("nobody@example.net", True),
        ("other@example.net", False),
    ]


def test_permanent_needs_both_failed_and_a_5_status() -> None:
    assert BouncedRecipient("a@b.c", "failed", "5.1.1", None, None).permanent
    assert not BouncedRecipient("a@b.c", "delayed", "5.1.1", None, None).permanent
    assert not BouncedRecipient("a@b.c", "failed", "4.4.1", None, None).permanent


SAMPLES = sorted(FIXTURES.glob("*.eml"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.integers(min_value=0), st.binary(max_size=40))
def test_mutated_messages_raise_nothing_in_any_reader(
    path: Path, position: int, noise: bytes
) -> None:
    raw = path.read_bytes()
    index = position % len(raw)
    try:
        parsed = parse_message(raw[:index] + noise + raw[index + len(noise) :], max_bytes=LIMIT)
    except ValidationError:
        return
    parse_report(parsed.message)
    detect(parsed)
    split_reply(parsed.text)


def test_global_delivery_status_part_is_split_into_blocks() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example\nSubject: Returned mail\nContent-Type: multipart/report;"
        b" report-type=delivery-status; boundary=B\n\n--B\nContent-Type: text/plain\n\nFailed.\n"
        b"--B\nContent-Type: message/global-delivery-status\n\n"
        b"Reporting-MTA: dns; mx.example\n\n"
        b"Final-Recipient: utf-8; dora@example.com\nAction: failed\nStatus: 5.1.2\n\n"
        b"Final-Recipient: rfc822; eve@example.com\nAction: delivered\nStatus: 2.0.0\n"
        b"--B--\n"
    )
    bounce = report_of(raw)
    assert isinstance(bounce, Bounce)
    assert bounce.reporting_mta == "mx.example"
    assert [(item.address, item.status, item.permanent) for item in bounce.recipients] == [
        ("dora@example.com", "5.1.2", True),
        ("eve@example.com", "2.0.0", False),
    ]


def test_a_nul_or_an_endless_diagnostic_is_kept_clean_and_bounded() -> None:
    raw = (FIXTURES / "postfix_hard.eml").read_bytes()
    raw = raw.replace(b"Recipient address rejected", b"Recipient\x00address " + b"x" * 10_000)
    [recipient] = bounce_of_raw(raw).recipients
    assert recipient.diagnostic is not None
    assert "\x00" not in recipient.diagnostic and len(recipient.diagnostic) <= 2_000


def bounce_of_raw(raw: bytes) -> Bounce:
    report = report_of(raw)
    assert isinstance(report, Bounce)
    return report

"""Every rule of prepare_email: the exception type and the field path it names."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime
from typing import Any

import pytest

from email_sender.errors import PayloadTooLarge, ValidationError
from email_sender.mail.message import EmailIn, PreparedEmail, build_mime, prepare_email
from email_sender.settings import MailSettings

LIMITS = MailSettings()


def request(**overrides: Any) -> EmailIn:
    body: dict[str, Any] = {
        "from": "sender@example.com",
        "to": ["alice@example.com"],
        "subject": "Hello",
        "text": "Hi Alice",
    }
    body.update(overrides)
    return EmailIn.model_validate({key: value for key, value in body.items() if value is not None})


def refused(data: EmailIn, limits: MailSettings = LIMITS) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        prepare_email(data, limits)
    return caught.value


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


# --- recipients and addresses -------------------------------------------------------------


def test_a_recipient_is_required() -> None:
    error = refused(request(to=[]))
    assert type(error) is ValidationError
    assert error.field == "to"


def test_bcc_alone_is_enough() -> None:
    prepared = prepare_email(request(to=[], bcc=["hidden@example.com"]), LIMITS)
    assert prepared.recipients == ["hidden@example.com"]


def test_recipients_over_the_limit() -> None:
    limits = MailSettings(max_recipients=2)
    error = refused(request(to=["a@example.com"], cc=["b@example.com"], bcc=["c@example.com"]),
                    limits)
    assert type(error) is ValidationError
    assert error.field == "to"
    assert "at most 2" in error.reason


def test_invalid_address_names_its_index() -> None:
    error = refused(request(to=["a@example.com", "b@example.com", "not-an-address"]))
    assert error.field == "to[2]"


@pytest.mark.parametrize("field", ["cc", "bcc"])
def test_invalid_cc_and_bcc_addresses(field: str) -> None:
    error = refused(request(**{field: ["ok@example.com", "bad@@example.com"]}))
    assert error.field == f"{field}[1]"


def test_invalid_from() -> None:
    assert refused(request(**{"from": "nobody"})).field == "from"


def test_invalid_reply_to() -> None:
    assert refused(request(reply_to="x@")).field == "reply_to"


def test_from_falls_back_to_the_configured_default() -> None:
    limits = MailSettings(default_from="Service <noreply@example.org>")
    prepared = prepare_email(request(**{"from": None}), limits)
    assert prepared.from_addr == "Service <noreply@example.org>"
    assert prepared.message_id.endswith("@example.org>")


def test_from_required_without_a_default() -> None:
    error = refused(request(**{"from": None}))
    assert error.field == "from"


def test_display_names_are_kept_and_addresses_normalised() -> None:
    prepared = prepare_email(
        request(to=['"Doe, Jane" <Jane@EXAMPLE.com>', "Bob <bob@example.com>"],
                reply_to="Support <help@Example.COM>"),
        LIMITS,
    )
    assert prepared.to == ['"Doe, Jane" <Jane@example.com>', "Bob <bob@example.com>"]
    assert prepared.reply_to == "Support <help@example.com>"
    assert prepared.recipients == ["Jane@example.com", "bob@example.com"]


def test_internationalised_addresses_are_accepted() -> None:
    prepared = prepare_email(
        request(**{"from": "Jöhn <jöhn@exämple.org>"}, to=["用户@例子.广告"]), LIMITS
    )
    assert prepared.sender == "jöhn@exämple.org"
    assert prepared.recipients == ["用户@例子.广告"]
    # The Message-ID must stay ASCII: its domain is the IDNA form of the sender's.
    assert prepared.message_id.endswith("@xn--exmple-cua.org>")


def test_a_single_string_recipient_becomes_a_list() -> None:
    assert request(to="alice@example.com").to == ["alice@example.com"]


def test_recipients_are_deduplicated_in_order() -> None:
    prepared = prepare_email(
        request(to=["a@example.com", "b@example.com"], cc=["A <a@example.com>"],
                bcc=["c@example.com", "b@example.com"]),
        LIMITS,
    )
    assert prepared.recipients == ["a@example.com", "b@example.com", "c@example.com"]


# --- line breaks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
        ({"to": ["a@example.com\r\nBcc: x@example.com"]}, "to[0]"),
        ({"from": "Eve\n <eve@example.com>"}, "from"),
        ({"reply_to": "r@example.com\r"}, "reply_to"),
        ({"tags": ["ok", "bad\ntag"]}, "tags[1]"),
        ({"headers": {"X-Campaign": "spring\r\nBcc: x@example.com"}}, "headers.X-Campaign"),
        ({"headers": {"X-Campaign\r\nBcc": "x"}}, "headers.X-Campaign\\r\\nBcc"),
    ],
)
def test_line_breaks_are_refused(overrides: dict[str, Any], field: str) -> None:
    error = refused(request(**overrides))
    assert type(error) is ValidationError
    assert error.field == field


# Every character str.splitlines() breaks on: the email package refuses them in a header value
# when the message is built, so an email holding one could never be sent.
LINE_SEPARATORS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
SEPARATORS = [*LINE_SEPARATORS, "\x00"]


@pytest.mark.parametrize("separator", SEPARATORS, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"subject": "Hi{}there"}, "subject"),
        ({"headers": {"X-Campaign": "spring{}2027"}}, "headers.X-Campaign"),
        ({"from": "Eve{}Smith <eve@example.com>"}, "from"),
        ({"to": ["Al{}ice <alice@example.com>"]}, "to[0]"),
    ],
)
def test_unicode_line_separators_are_refused(
    separator: str, overrides: dict[str, Any], field: str
) -> None:
    filled = {
        key: (value.format(separator) if isinstance(value, str)
              else [item.format(separator) for item in value] if isinstance(value, list)
              else {name: text.format(separator) for name, text in value.items()})
        for key, value in overrides.items()
    }
    error = refused(request(**filled))
    assert error.field == field
    assert f"U+{ord(separator):04X}" in error.reason


@pytest.mark.parametrize("separator", LINE_SEPARATORS, ids=lambda c: f"U+{ord(c):04X}")
def test_what_is_accepted_can_be_built(separator: str) -> None:
    """Why the rule exists: the same email builds without the separator, and not with it."""
    prepared = prepare_email(request(subject="Hi there", headers={"X-Campaign": "spring"}), LIMITS)
    message = build_mime(prepared)
    assert message["Subject"] == "Hi there"
    with pytest.raises(ValueError):
        message.replace_header("Subject", f"Hi{separator}there")


# --- headers ----------------------------------------------------------------------------------


def test_allowed_header_case_insensitive() -> None:
    prepared = prepare_email(request(headers={"x-campaign": "spring"}), LIMITS)
    assert prepared.headers == {"x-campaign": "spring"}


def test_header_not_in_the_allow_list() -> None:
    error = refused(request(headers={"X-Foo": "bar"}))
    assert error.field == "headers.X-Foo"
    assert "not allowed" in error.reason


@pytest.mark.parametrize(
    "name", ["From", "to", "Cc", "BCC", "Subject", "Message-ID", "Date", "Content-Type",
             "Content-Transfer-Encoding", "MIME-Version"],
)
def test_structural_headers_are_refused_even_when_allowed(name: str) -> None:
    limits = MailSettings(allowed_headers=[name])
    error = refused(request(headers={name: "x"}), limits)
    assert error.field == f"headers.{name}"
    assert "set by the service" in error.reason


def test_header_name_syntax() -> None:
    limits = MailSettings(allowed_headers=["X Bad"])
    assert refused(request(headers={"X Bad": "x"}), limits).field == "headers.X Bad"


# --- body -------------------------------------------------------------------------------------


def test_a_body_is_required() -> None:
    error = refused(request(text=None))
    assert type(error) is ValidationError
    assert error.field == "text"


def test_html_alone_is_a_body() -> None:
    prepared = prepare_email(request(text=None, html="<p>hi</p>"), LIMITS)
    assert prepared.html == "<p>hi</p>"


def test_body_over_the_byte_limit() -> None:
    limits = MailSettings(max_body_bytes=10)
    error = refused(request(text="ééééé", html="<p>x</p>"), limits)  # 10 bytes of text, then html
    assert type(error) is PayloadTooLarge
    assert error.field == "html"
    assert type(refused(request(text="é" * 6), limits)) is PayloadTooLarge


# --- attachments ------------------------------------------------------------------------------


def test_attachment_count_limit() -> None:
    limits = MailSettings(max_attachments=1)
    item = {"filename": "a.txt", "content_base64": b64(b"a")}
    error = refused(request(attachments=[item, item]), limits)
    assert type(error) is ValidationError
    assert error.field == "attachments"


def test_attachment_base64_must_be_strict() -> None:
    error = refused(request(attachments=[
        {"filename": "a.txt", "content_base64": b64(b"ok")},
        {"filename": "b.txt", "content_base64": "not base64!"},
    ]))
    assert type(error) is ValidationError
    assert error.field == "attachments[1].content_base64"


def test_attachment_total_size_limit() -> None:
    limits = MailSettings(max_attachment_bytes=100)
    error = refused(request(attachments=[
        {"filename": "a.bin", "content_base64": b64(b"x" * 60)},
        {"filename": "b.bin", "content_base64": b64(b"y" * 60)},
    ]), limits)
    assert type(error) is PayloadTooLarge
    assert error.field == "attachments[1].content_base64"


@pytest.mark.parametrize("filename", ["../etc/passwd", "dir\\file.txt", "a\r\nb.txt", "", ".."])
def test_attachment_filename_rules(filename: str) -> None:
    error = refused(request(attachments=[{"filename": filename, "content_base64": b64(b"x")}]))
    assert error.field == "attachments[0].filename"


def test_attachment_content_type_rules() -> None:
    error = refused(request(attachments=[
        {"filename": "a", "content_type": "text", "content_base64": b64(b"x")}
    ]))
    assert error.field == "attachments[0].content_type"


def test_attachments_are_decoded() -> None:
    prepared = prepare_email(request(attachments=[
        {"filename": "r.pdf", "content_type": "application/pdf", "content_base64": b64(b"%PDF")}
    ]), LIMITS)
    assert prepared.attachments == [("r.pdf", "application/pdf", b"%PDF")]


# --- metadata, tags, subject, send_at, idempotency key ----------------------------------------


def test_metadata_size_limit() -> None:
    limits = MailSettings(max_metadata_bytes=20)
    assert prepare_email(request(metadata={"a": "1234567890"}), limits).metadata == {
        "a": "1234567890"
    }
    error = refused(request(metadata={"a": "12345678901234567890"}), limits)
    assert type(error) is PayloadTooLarge
    assert error.field == "metadata"


def test_metadata_must_be_json() -> None:
    data = request()
    data.metadata = {"n": float("nan")}
    assert refused(data).field == "metadata"


def test_metadata_must_be_an_object() -> None:
    with pytest.raises(Exception, match="metadata"):
        request(metadata=["not", "an", "object"])


def test_tag_count_limit() -> None:
    limits = MailSettings(max_tags=2)
    error = refused(request(tags=["a", "b", "c"]), limits)
    assert error.field == "tags"


@pytest.mark.parametrize("tag", ["", "x" * 65, "has space", "semi;colon", "ünï"])
def test_tag_syntax(tag: str) -> None:
    assert refused(request(tags=["fine:tag-1.ok_", tag])).field == "tags[1]"


def test_duplicate_tags_are_collapsed() -> None:
    assert prepare_email(request(tags=["a", "b", "a"]), LIMITS).tags == ["a", "b"]


def test_subject_length_limit() -> None:
    limits = MailSettings(max_subject_chars=5)
    error = refused(request(subject="123456"), limits)
    assert type(error) is ValidationError
    assert error.field == "subject"


def test_send_at_must_be_timezone_aware() -> None:
    error = refused(request(send_at="2030-01-01T09:00:00"))
    assert error.field == "send_at"
    prepared = prepare_email(request(send_at="2030-01-01T09:00:00+02:00"), LIMITS)
    assert prepared.send_at == datetime(2030, 1, 1, 7, tzinfo=UTC)


def test_idempotency_key_rules() -> None:
    assert refused(request(idempotency_key="x" * 256)).field == "idempotency_key"
    assert refused(request(idempotency_key="a\nb")).field == "idempotency_key"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(Exception, match="extra"):
        request(sender="x@example.com")


# --- templates --------------------------------------------------------------------------------


def test_template_renders_subject_and_bodies() -> None:
    prepared = prepare_email(
        request(subject=None, text=None,
                template={"subject": "Hi {{ name }}", "text": "Dear {{ name }}",
                          "html": "<p>{{ name }}</p>"},
                variables={"name": "<Ann>"}),
        LIMITS,
    )
    assert (prepared.subject, prepared.text) == ("Hi <Ann>", "Dear <Ann>")
    assert prepared.html == "<p>&lt;Ann&gt;</p>"


def test_template_missing_variable() -> None:
    error = refused(request(text=None, template={"text": "Hi {{ first_name }}"}))
    assert error.field == "variables.first_name"


def test_template_part_also_given_inline() -> None:
    error = refused(request(template={"subject": "S {{ x }}"}, variables={"x": 1}))
    assert error.field == "template.subject"


def test_rendered_subject_is_checked_for_line_breaks() -> None:
    error = refused(request(subject=None, template={"subject": "{{ s }}"},
                            variables={"s": "a\r\nBcc: x@example.com"}))
    assert error.field == "subject"


# --- the prepared email -----------------------------------------------------------------------


def test_fingerprint_ignores_message_id_defaults_and_key() -> None:
    first = prepare_email(request(idempotency_key="k1"), LIMITS)
    second = prepare_email(request(cc=[], idempotency_key="k2"), LIMITS)
    assert first.message_id != second.message_id
    assert first.request_fingerprint == second.request_fingerprint
    changed = prepare_email(request(text="Other body"), LIMITS)
    assert changed.request_fingerprint != first.request_fingerprint


def test_row_round_trip() -> None:
    prepared = prepare_email(request(
        cc=["Carol <carol@example.com>"], bcc=["dan@example.com"], html="<b>x</b>",
        headers={"X-Campaign": "c"}, tags=["t"], metadata={"k": [1, {"v": None}]},
        send_at="2030-01-01T00:00:00Z", idempotency_key="key-1", dedupe=True,
        attachments=[{"filename": "a.bin", "content_base64": b64(bytes(range(256)))}],
    ), LIMITS)
    row = prepared.to_row()
    assert row["attachments"][0]["content_base64"] == b64(bytes(range(256)))
    assert PreparedEmail.from_row(row) == prepared


def test_from_row_accepts_json_text_and_naive_utc_times() -> None:
    import json

    prepared = prepare_email(request(send_at="2030-01-01T00:00:00Z", tags=["t"]), LIMITS)
    row = prepared.to_row()
    row.update(to=json.dumps(row["to"]), tags=json.dumps(row["tags"]),
               send_at=datetime(2030, 1, 1))
    assert PreparedEmail.from_row(row) == prepared


def test_build_mime_headers_parts_and_no_bcc() -> None:
    prepared = prepare_email(request(
        cc=["Carol <carol@example.com>"], bcc=["secret@example.com"], reply_to="r@example.com",
        html="<p>Hi</p>", headers={"X-Campaign": "spring"},
        attachments=[{"filename": "n.txt", "content_type": "text/plain",
                      "content_base64": b64(b"note")}],
    ), LIMITS)
    raw = build_mime(prepared).as_bytes(policy=email.policy.SMTP)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == prepared.message_id
    assert parsed["To"] == "alice@example.com"
    assert parsed["Cc"] == "Carol <carol@example.com>"
    assert parsed["Reply-To"] == "r@example.com"
    assert parsed["X-Campaign"] == "spring"
    assert parsed["Date"] is not None
    assert b"secret@example.com" not in raw
    assert b"Bcc" not in raw
    kinds = [part.get_content_type() for part in parsed.walk()]
    assert kinds == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html",
                     "text/plain"]
    attachment = next(parsed.iter_attachments())
    assert attachment.get_filename() == "n.txt"
    assert attachment.get_content() == "note"


def test_build_mime_for_international_addresses() -> None:
    prepared = prepare_email(
        request(**{"from": "Jöhn <jöhn@exämple.org>"}, to=["ünï@exämple.org"], subject="Grüße"),
        LIMITS,
    )
    raw = build_mime(prepared).as_bytes(policy=email.policy.SMTPUTF8)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"] == "ünï@exämple.org"
    assert parsed["Subject"] == "Grüße"

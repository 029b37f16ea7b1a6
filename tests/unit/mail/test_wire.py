"""The direct wire form of plain emails is byte for byte what the email package makes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from aiosmtplib.email import flatten_message
from hypothesis import given, settings
from hypothesis import strategies as st

from email_sender.mail.message import PreparedEmail, build_mime
from email_sender.mail.wire import simple_wire_form

DATE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

PLAIN = PreparedEmail(
    message_id="<0123abcd@example.com>", from_addr="Load Test <load@example.com>",
    to=["user1@example.org"], cc=[], bcc=[], reply_to=None, subject="Load test message 1",
    text="This message was sent by a test.", html=None, headers={}, attachments=[], tags=[],
    metadata={}, send_at=None, request_fingerprint="f",
)


def package_bytes(email: PreparedEmail, *, utf8: bool = False, cte_type: str = "7bit") -> bytes:
    return flatten_message(build_mime(email, date=DATE), utf8=utf8, cte_type=cte_type)


def test_a_plain_email_is_written_directly_as_the_package_would() -> None:
    fast = simple_wire_form(PLAIN, date=DATE)
    assert fast is not None
    # Whatever the relay offers: nothing in it needs SMTPUTF8 or 8BITMIME.
    for utf8 in (False, True):
        for cte_type in ("7bit", "8bit"):
            assert fast == package_bytes(PLAIN, utf8=utf8, cte_type=cte_type)


def test_edges_are_written_as_the_package_would() -> None:
    cases = [
        replace(PLAIN, text=""), replace(PLAIN, text="a\r\nb\rc\n\n"), replace(PLAIN, subject=""),
        replace(PLAIN, text=None, html="<p>hello</p>"), replace(PLAIN, text="x" * 78),
        replace(PLAIN, subject="x" * 69), replace(PLAIN, text=".\nFrom me\n..\n"),
        replace(PLAIN, cc=["Ann Lee <ann@x.example>", "bo@y.example"], reply_to="r@z.example",
                headers={"X-Campaign": "spring", "List-Unsubscribe": "<mailto:u@x.example>"}),
    ]
    for email in cases:
        assert simple_wire_form(email, date=DATE) == package_bytes(email)


def test_what_the_package_would_rewrite_is_left_to_it() -> None:
    for email in [
        replace(PLAIN, text="x" * 79),  # quoted-printable
        replace(PLAIN, text="café"),
        replace(PLAIN, subject="x" * 70),  # folded
        replace(PLAIN, subject="=?utf-8?q?hi?="),  # an encoded word
        replace(PLAIN, subject=" padded"),
        replace(PLAIN, from_addr='"Lee, Ann" <ann@x.example>'),
        replace(PLAIN, to=["ann@xn--caf-dma.example", "Zoë <z@x.example>"]),
        replace(PLAIN, html="<p>both</p>"),
        replace(PLAIN, attachments=[("a.txt", "text/plain", b"a")]),
        replace(PLAIN, headers={"X-Priority": "1\x00"}),
    ]:
        assert simple_wire_form(email, date=DATE) is None or (
            simple_wire_form(email, date=DATE) == package_bytes(email)
        )
    assert simple_wire_form(replace(PLAIN, text="café"), date=DATE) is None
    assert simple_wire_form(replace(PLAIN, subject="x" * 70), date=DATE) is None


_ASCII = st.characters(min_codepoint=0, max_codepoint=127)


def _words(alphabet: str, joiner: str = " ", max_words: int = 6) -> st.SearchStrategy[str]:
    word = st.text(alphabet=st.sampled_from(alphabet), min_size=1, max_size=8)
    return st.lists(word, max_size=max_words).map(joiner.join)


# Mostly plain text (the direct path), sometimes what the email package must rewrite.
_PLAIN = _words("aZ09.,;:!#-_'()[]@/")
_TRICKY = st.text(alphabet=st.sampled_from("aZ09 .,;:<>\"'()[]@=?-_\t\r\n\\é"), max_size=90)
_TEXTISH = st.one_of(_PLAIN, _PLAIN, _TRICKY)
_BODY = st.one_of(_PLAIN, st.text(alphabet=st.sampled_from("ab .\t\r\n"), max_size=200),
                  st.text(_ASCII, max_size=200), _TRICKY)
_ADDRESS = st.builds(
    lambda name, local, domain: f"{name} <{local}@{domain}>" if name else f"{local}@{domain}",
    st.one_of(_words("abZ-'", max_words=3), st.text(alphabet=st.sampled_from("ab Z.,\"'=?-"),
                                                    max_size=12)),
    st.one_of(_words("ab+-_", ".", 3).filter(bool),
              st.text(alphabet=st.sampled_from("ab.+-_"), min_size=1, max_size=10)),
    st.sampled_from(["example.com", "x.example", "b-c.example", "a..b"]),
)
_PARTS = st.one_of(st.tuples(_BODY, st.none()), st.tuples(st.none(), _BODY),
                   st.tuples(st.none() | _BODY, st.none() | _BODY))


@settings(max_examples=500, deadline=None)
@given(
    subject=_TEXTISH, parts=_PARTS, sender=_ADDRESS, to=st.lists(_ADDRESS, max_size=3),
    cc=st.lists(_ADDRESS, max_size=2), header=st.one_of(st.none(), _TEXTISH),
)
def test_whenever_it_writes_directly_the_bytes_are_the_packages(
    subject: str, parts: tuple[str | None, str | None], sender: str, to: list[str],
    cc: list[str], header: str | None,
) -> None:
    text, html = parts
    email = replace(PLAIN, subject=subject, text=text, html=html, from_addr=sender, to=to, cc=cc,
                    headers={"X-Campaign": header} if header is not None else {})
    fast = simple_wire_form(email, date=DATE)
    if fast is None:
        return
    assert fast == package_bytes(email)
    assert fast == package_bytes(email, utf8=True, cte_type="8bit")

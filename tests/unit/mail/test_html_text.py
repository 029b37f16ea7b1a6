"""HTML bodies as readable text, on markup as it comes from anyone."""

from __future__ import annotations

import pytest

from email_sender.mail.html import html_to_text
from email_sender.vectors.payloads import html_to_text as one_line


def test_blocks_become_lines_and_hidden_parts_go() -> None:
    markup = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<p>Bonjour &amp; merci</p><script>alert(1)</script><div>à bientôt<br>Claire</div>"
        "</body></html>"
    )
    assert html_to_text(markup) == "Bonjour & merci\n\nà bientôt\nClaire"
    assert one_line(markup) == "Bonjour & merci à bientôt Claire"


def test_an_xml_declaration_naming_another_encoding_is_read_as_the_text_it_is() -> None:
    assert html_to_text('<?xml version="1.0" encoding="iso-8859-1"?><p>été</p>') == "été"


@pytest.mark.parametrize("markup", ["", "   ", "plain words", "<<<<", "</p></div>"])
def test_odd_markup_gives_text_not_errors(markup: str) -> None:
    assert isinstance(html_to_text(markup), str)


# Markup that sends a backtracking tag regex or html.parser into quadratic time (100 KB of
# unclosed "<a " took minutes there). The timeout is the bound: these must not hang a reader.
@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "markup",
    ["<a " * 333_333, "<a" * 500_000, "<script>" * 100_000, "<" * 1_000_000,
     "<!--" * 250_000, "<div>" * 200_000 + "deep"],
)
def test_hostile_markup_is_read_in_bounded_time(markup: str) -> None:
    text = html_to_text(markup)
    assert len(text) <= len(markup)

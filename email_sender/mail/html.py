"""The readable text of an HTML body, for indexing and for reading replies.

HTML here comes from anyone (an API client, a received message), so it is read with libxml2's
HTML parser through lxml: it takes broken markup in linear time, where the standard library's
``html.parser`` and tag-matching regular expressions slow down quadratically on unclosed tags
(100 KB of ``<a `` took minutes).
"""

from __future__ import annotations

import re

import lxml.etree
import lxml.html

# Characters of markup read; the rest is not looked at.
MAX_HTML_CHARS = 4_000_000

_BLOCKS = ("p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table")
_HIDDEN = ("script", "style", "head", "title", "template")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(markup: str) -> str:
    """Visible text: tags dropped, block ends as line breaks, script and style gone."""
    if not markup.strip():
        return ""
    parser = lxml.html.HTMLParser(encoding="utf-8", recover=True, no_network=True)
    try:
        # Bytes with the encoding named: a string with an XML encoding declaration is refused.
        root = lxml.html.document_fromstring(
            markup[:MAX_HTML_CHARS].encode("utf-8", "replace"), parser=parser
        )
    except (lxml.etree.ParserError, ValueError):
        return ""
    for hidden in list(root.iter(*_HIDDEN)):
        hidden.drop_tree()
    for block in root.iter(*_BLOCKS):
        if block.tag != "br":
            block.text = "\n" + (block.text or "")
        block.tail = "\n" + (block.tail or "")
    text = root.text_content()
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()

"""Plain text from HTML, for the text/plain alternative of messages sent with only ``html``.

The tokenizer is a small linear scan rather than ``html.parser.HTMLParser``: on the
interpreters we run, HTMLParser takes quadratic time on some malformed input (unclosed
attribute quotes, comments or CDATA sections: CPython gh-135462, CVE-2025-6069, and later
reports of the same kind), and message bodies are
attacker-controlled and up to tens of megabytes. Every construct here is found with one
forward search, and an unterminated one swallows the rest of the input, as in the HTML
tokenizer's "bogus comment" and EOF rules, so the work is proportional to the input size.
Tags are split at the first ``>``; a ``>`` inside a quoted attribute value therefore ends
the tag early, which costs a few stray characters of text, never time.
"""

from __future__ import annotations

import html as html_entities
import re

# Elements whose content is never shown; it is skipped up to the matching end tag.
_SKIPPED_CONTENT = ("script", "style", "title", "template", "iframe", "noembed", "noframes")
_SKIP_END = {name: re.compile(rf"</{name}(?=[\s/>])", re.IGNORECASE) for name in _SKIPPED_CONTENT}
# Start tags that may appear inside <head>; any other start tag implicitly ends it
# (HTML "in head" insertion mode), so a missing </head> cannot hide the whole body.
_HEAD_CONTENT = frozenset({"head", "html", "meta", "link", "base", "noscript", "basefont"})
_PARAGRAPH = ("p", "h1", "h2", "h3", "h4", "h5", "h6", "dl", "table", "blockquote", "pre", "hr")
_LINE = (
    "div", "section", "article", "header", "footer", "nav", "aside", "main", "address",
    "figure", "figcaption", "form", "fieldset", "legend", "details", "summary", "center",
    "caption", "tr", "dt", "dd", "li", "body", "html",
)  # fmt: skip
_BREAKS = dict.fromkeys(_PARAGRAPH, 2) | dict.fromkeys(_LINE, 1)
_LISTS = frozenset({"ul", "ol", "menu"})
_CELLS = frozenset({"td", "th"})

_TAG = re.compile(r"<(/?)([A-Za-z][^\s/<>]*+)([^<>]*+)>")
_ATTRIBUTE = re.compile(r"""([^\s"'=<>/`]++)(?:\s*+=\s*+(?:"([^"]*+)"|'([^']*+)'|(\S++)))?""")
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r" {2,}")

# Sentinels stand for whitespace that line clean-up must keep (inside <pre>, list
# indentation). They are C0 controls, which are removed from the input first.
_KEEP_SPACE, _KEEP_NEWLINE, _KEEP_TAB = "\x00", "\x01", "\x02"
_RESTORE = str.maketrans({_KEEP_SPACE: " ", _KEEP_NEWLINE: "\n", _KEEP_TAB: "\t"})
_PROTECT = str.maketrans({" ": _KEEP_SPACE, "\n": _KEEP_NEWLINE, "\t": _KEEP_TAB})
# Controls other than whitespace, and the invisible characters that email templates pad
# their preview text with (soft hyphen, combining grapheme joiner, zero-width space and
# non-joiner, word joiner, byte order mark).
_INVISIBLE = (0xAD, 0x34F, 0x200B, 0x200C, 0x2060, 0xFEFF)
_CONTROLS = (*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), *range(0x7F, 0xA0))
_DROPPED = str.maketrans(dict.fromkeys((*_CONTROLS, *_INVISIBLE)))
_NOT_URLS = ("#", "javascript:", "cid:")

# A numeric character reference longer than any code point (&#99999999…) makes
# html.unescape call int() on thousands of digits, which Python refuses (ValueError):
# replace such references with U+FFFD first, as a browser would render them.
_HUGE_NUMERIC_REFERENCE = re.compile(r"&#(?:[xX][0-9a-fA-F]{7,}|[0-9]{8,});?")


def _unescape(text: str) -> str:
    return html_entities.unescape(_HUGE_NUMERIC_REFERENCE.sub("\ufffd", text))


def _attribute(attributes: str, wanted: str) -> str | None:
    for match in _ATTRIBUTE.finditer(attributes):
        if match.group(1).lower() == wanted:
            value = next((group for group in match.group(2, 3, 4) if group is not None), "")
            return _unescape(value)
    return None


class _TextBuilder:
    """Collects text pieces while tags come in; ``result`` tidies the lines.

    Block elements only request a line break (1) or a blank line (2); the largest request
    is written once, before the next visible text, so that nested and adjacent blocks do
    not pile up empty lines.
    """

    def __init__(self) -> None:
        self._out: list[str] = []
        self._pending_break = 0
        self._link: tuple[str, int] | None = None
        self._lists = 0
        self._pre = 0
        self._in_head = False

    def _text(self, text: str) -> None:
        if self._pending_break:
            if not text.strip(" "):
                return  # whitespace between blocks
            self._out.append("\n" * self._pending_break)
            self._pending_break = 0
        self._out.append(text)

    def _break(self, lines: int) -> None:
        self._pending_break = max(self._pending_break, lines)

    def data(self, raw: str) -> None:
        if self._in_head:
            return
        text = _unescape(raw).translate(_DROPPED)
        if self._pre:
            text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_PROTECT)
        else:
            text = _WHITESPACE.sub(" ", text)
        if text:
            self._text(text)

    def start_tag(self, name: str, attributes: str) -> None:
        if self._in_head:
            if name in _HEAD_CONTENT:
                return
            self._in_head = False
        if name == "head":
            self._in_head = True
        elif name == "a":
            self._close_link()
            self._link = (_attribute(attributes, "href") or "", len(self._out))
        elif name == "img":
            alt = _WHITESPACE.sub(" ", _attribute(attributes, "alt") or "").strip()
            if alt:
                self._text(f" {alt} ")
        elif name == "br":
            self._out.append("\n")
        elif name == "li":
            self._break(1)
            self._text(_KEEP_SPACE * 2 * max(self._lists - 1, 0) + "- ")
        elif name in _CELLS:
            self._text(" ")
        elif name in _LISTS:
            self._break(1 if self._lists else 2)
            self._lists += 1
        else:
            if name == "pre":
                self._pre += 1
            self._break(_BREAKS.get(name, 0))

    def end_tag(self, name: str) -> None:
        if self._in_head:
            self._in_head = name != "head"
            return
        if name == "a":
            self._close_link()
        elif name in _LISTS:
            self._lists = max(self._lists - 1, 0)
            self._break(1 if self._lists else 2)
        else:
            if name == "pre":
                self._pre = max(self._pre - 1, 0)
            self._break(_BREAKS.get(name, 0))

    def _close_link(self) -> None:
        if self._link is None:
            return
        href, start = self._link
        self._link = None
        url = "".join(href.split())  # the URL standard drops tabs and newlines
        if not url or url.lower().startswith(_NOT_URLS):
            return
        label = _WHITESPACE.sub(" ", "".join(self._out[start:]).translate(_RESTORE)).strip()
        if not label:
            self._text(f" {url} ")
        elif label not in (url, url.removeprefix("mailto:")):
            self._text(f" ({url})")

    def result(self) -> str:
        self._close_link()
        lines: list[str] = []
        for raw_line in "".join(self._out).split("\n"):
            line = _SPACES.sub(" ", raw_line).strip(" ")
            # At most one blank line in a row, none at the start.
            if line or (lines and lines[-1]):
                lines.append(line)
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines).translate(_RESTORE)


def _markup(source: str, start: int, builder: _TextBuilder) -> int:
    """Handle the markup at ``source[start] == "<"``; return where text resumes."""
    if source.startswith("<!--", start):
        end = source.find("-->", start + 4)
        return len(source) if end < 0 else end + 3
    tag = _TAG.match(source, start)
    if tag is None:
        if source.startswith(("<!", "<?", "</"), start):
            # Doctype, CDATA, conditional comments, processing instructions: skipped.
            end = source.find(">", start + 2)
            return len(source) if end < 0 else end + 1
        builder.data("<")
        return start + 1
    name = tag.group(2).lower()
    if tag.group(1):
        builder.end_tag(name)
        return tag.end()
    builder.start_tag(name, tag.group(3))
    skip_end = _SKIP_END.get(name)
    if skip_end is None:
        return tag.end()
    closing = skip_end.search(source, tag.end())
    if closing is None:
        return len(source)
    end = source.find(">", closing.end())
    builder.end_tag(name)
    return len(source) if end < 0 else end + 1


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of ``html``; never raises on malformed markup.

    Guarantees: script, style, head and similar invisible content is dropped; block
    elements and ``<br>`` become line breaks, at most one blank line in a row; list items
    start with "- " (indented two spaces per nesting level); a link whose URL differs from
    its text reads "text (url)"; entities are decoded; whitespace outside ``<pre>`` is
    collapsed; nothing is wrapped. Lines end with "\\n". Runs in time linear in the input.
    """
    builder = _TextBuilder()
    position = 0
    while position < len(html):
        start = html.find("<", position)
        if start < 0:
            builder.data(html[position:])
            break
        if start > position:
            builder.data(html[position:start])
        position = _markup(html, start, builder)
    return builder.result()

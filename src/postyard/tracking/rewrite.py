"""Click and open tracking in HTML bodies (pure): links through the click endpoint, a pixel.

The output is the input with exactly two kinds of change: the ``href`` value of each
tracked ``<a>`` replaced by the click URL, and the open pixel inserted. Everything else is
left byte for byte, so a template the tokenizer misjudges is never broken further.

Tracked: the first ``href`` of an ``<a>`` start tag whose URL, after entity decoding and the
URL standard's trimming, starts with ``http://`` or ``https://`` (any letter case). Left as
they are: ``mailto:``, ``tel:``, ``#fragment``, relative and protocol-relative URLs, links
beyond ``MAX_TRACKED_LINKS``, and links the author opts out with the attribute
``data-pytrack="off"`` (value compared without case; the attribute stays in the output).
Each occurrence gets its own index, even when a URL repeats, so statistics can tell the
button from the footer link. Links inside comments, ``<script>``, ``<style>``, ``<title>``,
``<textarea>`` and other raw-text elements are not links and are not touched.

Plain-text parts are deliberately not rewritten (there is no ``rewrite_text``): a reader
sees the URL there, and a long tracking URL in place of the address they expect looks like
phishing; URL boundaries in prose are guesswork (trailing punctuation, wrapped lines); and
the large providers leave text parts alone by default too.

Like ``postyard.sending.html_text``, this is a linear scan, not ``html.parser``, which is
quadratic on some malformed input on our interpreters (CPython gh-135462 and later reports).
It follows the HTML tokenizer where links are concerned (quoted attribute values may hold
``>``; attribute values decode character references by the attribute rules) and every
construct is found with one forward search; an unterminated one swallows the rest of the
input, as the tokenizer's end-of-file rules do, so the work is proportional to the input.
"""

from __future__ import annotations

import html as html_entities
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.entities import html5

MAX_TRACKED_LINKS = 1000
OPT_OUT_ATTRIBUTE = "data-pytrack"

_WS = "\t\n\f\r "  # HTML "ASCII whitespace"
_SKIP_WS_SLASH = re.compile(rf"[{_WS}/]*+")
_SKIP_WS = re.compile(rf"[{_WS}]*+")
_ATTRIBUTE_NAME_REST = re.compile(rf"[^{_WS}/>=]*+")  # the first character may be "="
_UNQUOTED_VALUE = re.compile(rf"[^{_WS}>]*+")
_TAG_NAME = re.compile(rf"[A-Za-z][^{_WS}/>]*+")
_COMMENT_END = re.compile(r"--!?>")
# Elements whose content is text to the tokenizer, up to their own end tag.
_RAW_TEXT = ("script", "style", "xmp", "iframe", "noembed", "noframes", "textarea", "title")
_RAW_END = {name: re.compile(rf"</{name}(?=[{_WS}/>])", re.IGNORECASE) for name in _RAW_TEXT}
_CHAR_REF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[A-Za-z0-9]+;?)")
# The URL standard strips C0 controls and spaces at both ends and drops tabs and newlines.
_URL_EDGES = "".join(map(chr, range(0x21)))
_URL_DROPPED = str.maketrans(dict.fromkeys("\t\n\r"))
# Left in a stored link, these would make it unfit for a Location header.
_URL_ESCAPED = str.maketrans({chr(c): f"%{c:02X}" for c in (*range(0x20), 0x20, 0x7F)})
_TRACKED_SCHEMES = ("http://", "https://")


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """The rewritten document and the original URLs of its tracked links: ``links[i]`` is
    the target of the link whose href became ``click_url(i)``."""

    html: str
    links: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Attribute:
    name: str  # lowercase
    value: str  # raw, entities not decoded
    span: tuple[int, int] | None  # of the value, quotes included; None without a value


def _decode_char_ref(match: re.Match[str]) -> str:
    reference = match.group(1)
    if reference.startswith("#"):
        is_hex = reference[1:2] in ("x", "X")
        digits = reference[2 if is_hex else 1 :].rstrip(";").lstrip("0") or "0"
        if len(digits) > 8:
            # Beyond U+10FFFF whatever the digits; and html.unescape would hand a long
            # decimal run to int(), which refuses more than 4300 digits with ValueError.
            return "\ufffd"
        # unescape applies the HTML remapping of C1 controls and invalid code points.
        return html_entities.unescape(f"&#{'x' if is_hex else ''}{digits};")
    if reference.endswith(";"):
        return html5.get(reference, match.group(0))
    # Without the semicolon only the legacy names count, and in an attribute not even
    # they when "=" follows: "?a=1&copy=2" keeps its "&copy" (HTML "named character
    # reference state"). Longer runs of letters ("&notify") are never decoded in attributes.
    following = match.string[match.end() : match.end() + 1]
    if reference in html5 and following != "=":
        return html5[reference]
    return match.group(0)


def decode_attribute_value(raw: str) -> str:
    """An attribute value as the browser sees it: character references decoded by the
    HTML rules for attributes (not those of ``html.unescape``, which turns the ``&not``
    of ``?a&notify=1`` into a sign)."""
    return _CHAR_REF.sub(_decode_char_ref, raw) if "&" in raw else raw


def _skip(pattern: re.Pattern[str], source: str, position: int) -> int:
    """Where ``pattern``, which may match nothing, stops matching from ``position``."""
    match = pattern.match(source, position)
    return position if match is None else match.end()


def _scan_attributes(source: str, position: int) -> tuple[list[_Attribute], int | None]:
    """The attributes of the tag whose name ends at ``position`` and the index after its
    ``>``, or None when the input ends inside the tag."""
    attributes: list[_Attribute] = []
    end = len(source)
    while True:
        position = _skip(_SKIP_WS_SLASH, source, position)
        if position >= end:
            return attributes, None
        if source[position] == ">":
            return attributes, position + 1
        name_end = _skip(_ATTRIBUTE_NAME_REST, source, position + 1)
        name = source[position:name_end].lower()
        position = _skip(_SKIP_WS, source, name_end)
        if position >= end or source[position] != "=":
            attributes.append(_Attribute(name, "", None))
            continue
        position = _skip(_SKIP_WS, source, position + 1)
        if position >= end:
            return attributes, None
        quote = source[position]
        if quote in "\"'":
            close = source.find(quote, position + 1)
            if close < 0:
                return attributes, None
            value = source[position + 1 : close]
            value_end = close + 1
        else:
            value_end = _skip(_UNQUOTED_VALUE, source, position)
            value = source[position:value_end]
        attributes.append(_Attribute(name, value, (position, value_end)))
        position = value_end


def _link_target(attributes: list[_Attribute]) -> tuple[str, tuple[int, int]] | None:
    """The URL to track and where its value sits, or None when the link stays as it is."""
    href = next((item for item in attributes if item.name == "href"), None)
    if href is None or href.span is None:
        return None
    for item in attributes:
        if item.name == OPT_OUT_ATTRIBUTE and item.value.strip(_WS).lower() == "off":
            return None
    url = decode_attribute_value(href.value).strip(_URL_EDGES).translate(_URL_DROPPED)
    if not url.lower().startswith(_TRACKED_SCHEMES):
        return None
    return url.translate(_URL_ESCAPED), href.span


class _Rewriter:
    """Walks the document once and records edits; ``result`` applies them in order."""

    def __init__(self, source: str, click_url: Callable[[int], str] | None) -> None:
        self.source = source
        self.click_url = click_url
        self.edits: list[tuple[int, int, str]] = []  # (start, end, replacement), no overlaps
        self.links: list[str] = []
        self.body_end: int | None = None

    def run(self) -> None:
        source, position = self.source, 0
        while (start := source.find("<", position)) >= 0:
            position = self.markup(start)

    def markup(self, start: int) -> int:
        """Handle the markup at ``source[start] == "<"``; return where text resumes."""
        source = self.source
        if source.startswith("<!--", start):
            if source.startswith((">", "->"), start + 4):  # "<!-->" and "<!--->" end at once
                return source.find(">", start + 4) + 1
            comment_end = _COMMENT_END.search(source, start + 4)
            return len(source) if comment_end is None else comment_end.end()
        is_end = source.startswith("</", start)
        name = _TAG_NAME.match(source, start + (2 if is_end else 1))
        if name is None:
            if source.startswith(("<!", "<?", "</"), start):  # doctype, CDATA, bogus comment
                close = source.find(">", start + 2)
                return len(source) if close < 0 else close + 1
            return start + 1  # a "<" that starts nothing is text
        attributes, after = _scan_attributes(source, name.end())
        if after is None:
            return len(source)  # the tokenizer drops a tag cut off by the end of input
        tag = name.group().lower()
        if is_end:
            if tag == "body":
                self.body_end = start
            return after
        if tag == "a":
            self.link(attributes)
        raw_end = _RAW_END.get(tag)
        if raw_end is None:
            return after
        end_tag = raw_end.search(source, after)
        return len(source) if end_tag is None else end_tag.start()

    def link(self, attributes: list[_Attribute]) -> None:
        if self.click_url is None or len(self.links) >= MAX_TRACKED_LINKS:
            return
        target = _link_target(attributes)
        if target is None:
            return
        url, (start, end) = target
        replacement = self.click_url(len(self.links))
        self.links.append(url)
        self.edits.append((start, end, f'"{html_entities.escape(replacement, quote=True)}"'))

    def result(self) -> str:
        pieces: list[str] = []
        copied_to = 0
        # Stable sort: an insertion and a replacement never share a start (the pixel goes
        # in front of a "<", hrefs start inside tags).
        for start, end, text in sorted(self.edits, key=lambda edit: edit[0]):
            pieces.append(self.source[copied_to:start])
            pieces.append(text)
            copied_to = end
        pieces.append(self.source[copied_to:])
        return "".join(pieces)


def rewrite_html(
    html: str, *, click_url: Callable[[int], str] | None, open_pixel_url: str | None
) -> RewriteResult:
    """``html`` with its http(s) links sent through ``click_url(index)`` (indexes from 0 in
    document order; None leaves every link alone, for open tracking only) and, with
    ``open_pixel_url``, a hidden 1x1 pixel inserted before the last ``</body>`` tag (one
    inside a comment or script does not count), or at the end when there is none.

    Guarantees: only tracked href values change (each written double-quoted and
    HTML-escaped) and the pixel is added; ``links`` holds the decoded URLs, with controls
    and spaces percent-encoded; never raises on malformed markup; linear time. Exceptions
    from ``click_url`` propagate.
    """
    rewriter = _Rewriter(html, click_url)
    rewriter.run()
    if open_pixel_url is not None:
        pixel = (
            f'<img src="{html_entities.escape(open_pixel_url, quote=True)}" '
            'width="1" height="1" alt="" style="display:none">'
        )
        at = len(html) if rewriter.body_end is None else rewriter.body_end
        rewriter.edits.append((at, at, pixel))
    return RewriteResult(html=rewriter.result(), links=tuple(rewriter.links))

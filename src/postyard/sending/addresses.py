"""Email addresses as the API receives them (``a@b.com``, ``Name <a@b.com>``) and as
headers carry them.

Parsing is deliberately stricter than RFC 5322: one mailbox per string, no comments, no
groups, no quoted local parts, no domain literals, and no control characters anywhere. The
addr-spec itself is checked by ``email-validator``; domains are kept in their ASCII form
(IDNA A-labels), which is what DNS, the SMTP envelope and DKIM need.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import unicodedata
from dataclasses import dataclass

from postyard.core.addr_spec import check_addr_spec
from postyard.sending.simple_mailbox import simple_addr_spec, simple_mailbox

# Characters that must never reach a header: C0/C1 controls (CR, LF and NUL among them),
# unpaired surrogates (not encodable) and the Unicode line/paragraph separators, which
# some software treats as line breaks.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_CATEGORY_NAMES = {
    "Cc": "a control character",
    "Cs": "an unpaired surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
# RFC 2047 section 2: charset, encoding and text contain no '?' and no whitespace.
_ENCODED_WORD = re.compile(r"=\?([^?\s]++)\?([bBqQ])\?([^?\s]*+)\?=")
# RFC 5322 section 3.2.3 atext; a phrase made only of atoms needs no quoting.
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# RFC 2047 section 5 (3): the only characters a "Q" word may carry as-is inside a phrase.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_EW_PREFIX_Q = "=?utf-8?q?"
_EW_PREFIX_B = "=?utf-8?b?"
_EW_MAX = 75  # RFC 2047 section 2: an encoded word is at most 75 characters
_EW_CHROME = len(_EW_PREFIX_Q) + len("?=")
# Longest single token (encoded word, quoted string, atom) of a header value: with the
# space before it and a comma after it, it still fits a folded line of 78 characters
# (RFC 5322 section 2.1.1).
MAX_HEADER_TOKEN = _EW_MAX
_UNQUOTED_NAME_FORBIDDEN = re.compile(r'["<>\\]')
_LOCAL_FORBIDDEN = re.compile(r'[\s"(),:;<>@\[\\\]]')
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_WHITESPACE_RUN = re.compile(r"\s+")
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
# One mailbox never needs more than a header line (RFC 5322 section 2.1.1); longer input is
# refused before any parsing work is spent on it.
_MAX_INPUT = 998


class InvalidAddress(ValueError):
    """An address the API must refuse; ``message`` names the request field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def header_text_problem(text: str, *, allow_tab: bool = False) -> str | None:
    """Why ``text`` may not go into a header (e.g. "a control character"), or None.

    Also looks inside RFC 2047 encoded words: one that decodes to a control character is
    refused too, so that software which decodes headers cannot be tricked into seeing a
    line break.
    """
    if _PRINTABLE_ASCII.fullmatch(text) and "=?" not in text:
        return None  # the common case, without a look-up per character
    for char in text:
        if char == "\t" and allow_tab:
            continue
        category = unicodedata.category(char)
        if category in _FORBIDDEN_CATEGORIES:
            return _CATEGORY_NAMES[category]
    if "=?" in text:
        for match in _ENCODED_WORD.finditer(text):
            decoded = _decode_word_bytes(match.group(2), match.group(3))
            if decoded is not None and any(b < 0x20 or b == 0x7F for b in decoded):
                return "an encoded control character"
    return None


def _decode_word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        return binascii.a2b_qp(payload.encode("ascii"), header=True)
    except (binascii.Error, ValueError):
        return None


def _q_length(data: bytes) -> int:
    return sum(1 if byte in _Q_SAFE or byte == 0x20 else 3 for byte in data)


def _q_encode(data: bytes) -> str:
    return "".join(
        chr(byte) if byte in _Q_SAFE else "_" if byte == 0x20 else f"={byte:02X}" for byte in data
    )


def encode_rfc2047_words(text: str, *, first_word_max: int = _EW_MAX) -> list[str]:
    """``text`` as UTF-8 encoded words of at most 75 characters each (RFC 2047).

    Words split only between characters (section 5), so each decodes on its own, and
    preferably just after a space of the text: decoders must ignore the whitespace a folder
    puts between words (section 6.2), and the few that do not (CPython's own address
    parser among them) then show a doubled space rather than a space inside a word. "Q" or
    "B" is chosen for the whole text, whichever is shorter; the "Q" form uses only the
    characters allowed in a phrase, so the result is valid in display names too.
    ``first_word_max`` shortens the first word to what is left of a header's first line;
    it is ignored when too small to hold any character.
    """
    data = text.encode("utf-8")
    use_q = _q_length(data) <= 4 * -(-len(data) // 3)

    def size(chars: str) -> tuple[int, int]:
        raw = chars.encode("utf-8")
        return _q_length(raw), len(raw)

    def fits(q_units: int, n_bytes: int, limit: int) -> bool:
        payload = q_units if use_q else 4 * -(-n_bytes // 3)
        return payload + _EW_CHROME <= limit

    limit = first_word_max if first_word_max >= _EW_CHROME + 12 else _EW_MAX
    words: list[str] = []
    chunk, q_units, n_bytes = "", 0, 0
    for char in text:
        char_q, char_bytes = size(char)
        if not chunk or fits(q_units + char_q, n_bytes + char_bytes, limit):
            chunk, q_units, n_bytes = chunk + char, q_units + char_q, n_bytes + char_bytes
            continue
        cut = chunk.rfind(" ") + 1
        rest_q, rest_bytes = size(chunk[cut:] + char)
        if 0 < cut < len(chunk) and fits(rest_q, rest_bytes, _EW_MAX):
            head, chunk, q_units, n_bytes = chunk[:cut], chunk[cut:] + char, rest_q, rest_bytes
        else:
            head, chunk, q_units, n_bytes = chunk, char, char_q, char_bytes
        words.append(_encoded_word(head.encode("utf-8"), use_q=use_q))
        limit = _EW_MAX
    if chunk:
        words.append(_encoded_word(chunk.encode("utf-8"), use_q=use_q))
    return words


def _encoded_word(data: bytes, *, use_q: bool) -> str:
    if use_q:
        return f"{_EW_PREFIX_Q}{_q_encode(data)}?="
    return f"{_EW_PREFIX_B}{base64.b64encode(data).decode('ascii')}?="


def _label_to_unicode(label: str) -> str:
    if label[:4].lower() != "xn--":
        return label
    try:
        return label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return label


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox. ``domain`` is ASCII (IDNA A-labels); ``local`` may be UTF-8 (RFC 6531).

    Construction refuses values that could break a header, so every instance renders
    safely, however it was made.
    """

    display_name: str
    local: str
    domain: str

    def __post_init__(self) -> None:
        if not self.local or _LOCAL_FORBIDDEN.search(self.local):
            raise ValueError(f"Not a usable local part: {self.local!r}")
        if not self.domain.isascii() or not _ASCII_DOMAIN.fullmatch(self.domain):
            raise ValueError(f"Not an ASCII (A-label) domain: {self.domain!r}")
        for text in (self.display_name, self.local):
            problem = header_text_problem(text)
            if problem is not None:
                raise ValueError(f"Address text {text!r} contains {problem}")

    @property
    def addr_spec(self) -> str:
        """``local@domain`` with the domain in its ASCII form."""
        return f"{self.local}@{self.domain}"

    @property
    def unicode_addr_spec(self) -> str:
        """``local@domain`` with IDNA labels shown as Unicode, for people to read."""
        labels = (_label_to_unicode(label) for label in self.domain.split("."))
        return f"{self.local}@{'.'.join(labels)}"

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is non-ASCII: only SMTPUTF8 (RFC 6531) can carry it."""
        return not self.local.isascii()

    def header_value(self) -> str:
        """The mailbox as a header writes it, on one line, tokens separated by single spaces.

        A non-ASCII display name (or one that looks like an encoded word, so that it reads
        back literally) becomes RFC 2047 encoded words; one with specials is quoted
        (RFC 5322 section 3.2.4). No token is longer than ``MAX_HEADER_TOKEN`` except the
        ``<addr-spec>`` itself, so a folder may break the value at any of its spaces.
        """
        if not self.display_name:
            return self.addr_spec
        return f"{_render_phrase(self.display_name)} <{self.addr_spec}>"


def _render_phrase(name: str) -> str:
    """``name`` as a header phrase. A sender's name is rendered for every message it sends,
    so names that fit a header line are memoised (a bounded cache whatever the input)."""
    return _memo_phrase(name) if len(name) <= _MAX_INPUT else _phrase(name)


@functools.lru_cache(maxsize=1024)
def _memo_phrase(name: str) -> str:
    return _phrase(name)


def _phrase(name: str) -> str:
    if name.isascii() and "=?" not in name:
        if _ATOM_PHRASE.fullmatch(name) and all(
            len(word) <= MAX_HEADER_TOKEN for word in name.split(" ")
        ):
            return name
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(quoted) <= MAX_HEADER_TOKEN:
            return quoted
    return " ".join(encode_rfc2047_words(name))


def _show(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "...")


def _has_unquoted_separator(text: str) -> bool:
    if '"' not in text:  # nothing is quoted: two C scans instead of a loop per character
        return "," in text or ";" in text
    in_quotes = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and in_quotes:
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char in ",;" and not in_quotes:
            return True
    return False


def _read_quoted(text: str) -> tuple[str, int] | None:
    """The content of the quoted string opening ``text`` and the index after it."""
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
        elif char == '"':
            return "".join(out), index + 1
        else:
            out.append(char)
            index += 1
    return None


def _split_mailbox(text: str) -> tuple[str, str] | None:
    """(display name, addr-spec) of ``addr``, ``<addr>``, ``Name <addr>`` or ``"Name" <addr>``."""
    if not text.endswith(">"):
        if any(char in text for char in '<>"'):
            return None
        return "", text
    if text.startswith('"'):
        quoted = _read_quoted(text)
        if quoted is None:
            return None
        name, end = quoted
        rest = text[end:].lstrip()
    else:
        start = text.find("<")
        if start < 0:
            return None
        name, rest = text[:start], text[start:]
        if _UNQUOTED_NAME_FORBIDDEN.search(name):
            return None
        # Between the words of an unquoted phrase, whitespace is folding (RFC 5322 3.2.5).
        name = _WHITESPACE_RUN.sub(" ", name)
    if not rest.startswith("<"):
        return None
    inner = rest[1:-1].strip()
    if "<" in inner or ">" in inner:
        return None
    return name.strip(), inner


def parse_address(value: str, *, field: str) -> Address:
    """Parse one mailbox (see ``_parse_address``); valid values are memoised per process
    (``Address`` is immutable), invalid ones parsed again to name ``field`` in the error."""
    if isinstance(value, str) and len(value) <= _MAX_INPUT:
        known = _valid_address(value)
        if known is not None:
            return known
    return _parse_address(value, field=field)


@functools.lru_cache(maxsize=4096)
def _valid_address(value: str) -> Address | None:
    try:
        return _parse_address(value, field="address")
    except InvalidAddress:
        return None


def _parse_address(value: str, *, field: str) -> Address:
    """``_parse_simple`` when it answers, else ``_parse_general`` (the same result)."""
    simple = _parse_simple(value) if isinstance(value, str) else None
    return simple or _parse_general(value, field=field)


def _parse_simple(value: str) -> Address | None:
    """What ``_parse_general`` gives for a common, valid mailbox (``simple_mailbox``), or
    None to let it decide (tests/sending/test_simple_mailboxes.py compares both)."""
    parts = simple_mailbox(value) if len(value) <= _MAX_INPUT else None
    return None if parts is None else Address(*parts)


def _parse_general(value: str, *, field: str) -> Address:
    """Parse one mailbox in Resend's ``from`` format: ``a@b.com`` or ``Name <a@b.com>``.

    Guarantees a syntactically valid addr-spec (email-validator, no DNS look-up) whose
    domain is ASCII and may be delivered to (special-use names such as ``localhost`` or
    ``.invalid`` are refused; ``.test`` is accepted), and text that is safe in a header.
    Raises ``InvalidAddress`` naming ``field`` for empty or overlong input, control
    characters anywhere, more than one address, or an invalid addr-spec.
    """
    prefix = f"Invalid `{field}` field:"
    if not isinstance(value, str):
        raise InvalidAddress(field, f"{prefix} expected a string, got {type(value).__name__}.")
    if len(value) > _MAX_INPUT:
        raise InvalidAddress(field, f"{prefix} {_show(value)} is too long.")
    problem = header_text_problem(value)
    if problem is not None:
        raise InvalidAddress(field, f"{prefix} {_show(value)} contains {problem}.")
    text = value.strip()
    if not text:
        raise InvalidAddress(field, f"{prefix} the email address is empty.")
    if _has_unquoted_separator(text):
        raise InvalidAddress(
            field,
            f"{prefix} {_show(value)} contains more than one address "
            "(send a list; quote a display name that contains a comma).",
        )
    parts = _split_mailbox(text)
    invalid = f"{prefix} {_show(value)} is not a valid email address."
    if parts is None:
        raise InvalidAddress(
            field, f"{invalid} Use the `email@example.com` or `Name <email@example.com>` format."
        )
    display_name, addr_spec = parts
    checked = simple_addr_spec(addr_spec) or check_addr_spec(addr_spec)
    if isinstance(checked, str):
        raise InvalidAddress(field, f"{invalid} {checked}")
    local, domain = checked
    return Address(display_name=display_name, local=local, domain=domain)


def parse_address_list(value: str | list[str] | None, *, field: str) -> list[Address]:
    """Parse Resend's "string or list of strings" recipient fields; None gives [].

    Each string holds exactly one mailbox (see ``parse_address``). Raises
    ``InvalidAddress`` naming ``field`` for the first invalid entry or a value of another
    type.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [parse_address(value, field=field)]
    if not isinstance(value, list | tuple):
        raise InvalidAddress(
            field, f"Invalid `{field}` field: expected a string or a list of strings."
        )
    return [parse_address(item, field=field) for item in value]

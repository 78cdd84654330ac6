"""List-Unsubscribe (RFC 2369) and one-click unsubscribe (RFC 8058), pure parts.

The HTTPS URL carries an unsubscribe token (``tokens.make_unsubscribe_token``); the mailto
address carries a mailto token (``tokens.make_mailto_unsubscribe_token``) in its local
part, ``u+<token>@<return-path domain>``, next to the VERP ``b+`` bounce addresses on the
same domain. RFC 8058 section 3.1 requires both headers to be covered by the DKIM
signature; the signer's header list must include them.

The endpoint (not here) unsubscribes on a POST whose body ``is_one_click_body`` accepts,
without cookies, redirects or a confirmation page, and answers 200 or 202; a GET shows
the preferences page and never unsubscribes by itself, because link scanners fetch every
URL they see (conventions A7.4).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit

LIST_UNSUBSCRIBE = "List-Unsubscribe"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe-Post"
ONE_CLICK_VALUE = "List-Unsubscribe=One-Click"  # RFC 8058 section 3.1, the exact value
MAILTO_PREFIX = "u+"
MAX_ONE_CLICK_BODY = 16 * 1024  # a real one-click body is a few hundred bytes at most
_MAX_URL = 900  # "List-Unsubscribe: <url>," must fit one 998-octet line (RFC 5322 2.1.1)
_MAX_LOCAL_PART = 64  # RFC 5321 section 4.5.3.1.1
# RFC 3986 characters only: no whitespace, controls, quotes, angle brackets or non-ASCII,
# any of which could end the <...> of RFC 2369 or the header itself.
_URI = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})+")
_MAILTO_TOKEN = re.compile(r"[a-z0-9]+")
# RFC 6068 section 2: addr-spec characters outside unreserved and "some-delims" are
# percent-encoded in a mailto URI.
_MAILTO_SAFE = "-._~!$'()*+,;:@"
_BOUNDARY = re.compile(r';\s*boundary\s*=\s*(?:"([^"\r\n]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE)
_PART_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^\s;]+))', re.IGNORECASE)


def _check_https_url(url: str) -> str:
    if not isinstance(url, str) or not 0 < len(url) <= _MAX_URL or not _URI.fullmatch(url):
        raise ValueError("The unsubscribe URL must be ASCII without spaces or controls.")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ValueError("The unsubscribe URL must be an https:// URL with a host.")
    return url


def _mailto_uri(address: str) -> str:
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise ValueError("The unsubscribe address must be a plain ASCII local@domain.")
    return f"mailto:{quote(address, safe=_MAILTO_SAFE)}?subject=unsubscribe"


def list_unsubscribe_headers(
    *, https_url: str, mailto: str | None, one_click: bool
) -> list[tuple[str, str]]:
    """``List-Unsubscribe: <https_url>, <mailto:mailto?subject=unsubscribe>`` (HTTPS first:
    RFC 2369 clients use the first method they support) and, when ``one_click``,
    ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. ``mailto`` is an address, not a
    URI. Values are plain ASCII, safe in a header, and fold at the comma. Raises
    ``ValueError`` for a URL that is not https with a host, over 900 characters, or with
    characters outside RFC 3986 (CR and LF included), and for a malformed address."""
    uris = [f"<{_check_https_url(https_url)}>"]
    if mailto is not None:
        uris.append(f"<{_mailto_uri(mailto)}>")
    headers = [(LIST_UNSUBSCRIBE, ", ".join(uris))]
    if one_click:
        headers.append((LIST_UNSUBSCRIBE_POST, ONE_CLICK_VALUE))
    return headers


def _is_one_click_pair(name: str, value: str) -> bool:
    # RFC 8058 spells the pair exactly; case and surrounding blanks are forgiven, because
    # refusing a sloppy but willing client would leave a recipient subscribed.
    return (name.strip().lower(), value.strip().lower()) == ("list-unsubscribe", "one-click")


def _urlencoded_one_click(body: bytes) -> bool:
    text = body.decode("utf-8", "replace")
    pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")
    return any(_is_one_click_pair(name, value) for name, value in pairs)


def _multipart_one_click(body: bytes, boundary: bytes) -> bool:
    # RFC 2046 section 5.1.1 / RFC 7578. Line ends are normalised first so that bare-LF
    # senders are understood too; every step is a split or find, linear in the body.
    text = b"\n" + body.replace(b"\r\n", b"\n")
    for part in text.split(b"\n--" + boundary)[1:]:  # [0] is the preamble
        if part.startswith(b"--"):
            break  # the close delimiter
        _, newline, rest = part.partition(b"\n")  # transport padding after the delimiter
        if not newline:
            continue
        head, separator, content = rest.partition(b"\n\n")
        if not separator:
            if not rest.startswith(b"\n"):
                continue
            head, content = b"", rest[1:]
        if _part_is_one_click(head.decode("latin-1"), content):
            return True
    return False


def _part_is_one_click(head: str, content: bytes) -> bool:
    for line in head.split("\n"):
        field, colon, value = line.partition(":")
        if not colon or field.strip().lower() != "content-disposition":
            continue
        disposition, _, parameters = value.partition(";")
        if disposition.strip().lower() != "form-data":
            return False
        name = _PART_NAME.search(";" + parameters)
        if name is None:
            return False
        field_name = name.group(1) if name.group(1) is not None else name.group(2)
        return _is_one_click_pair(field_name, content.decode("utf-8", "replace"))
    return False


def is_one_click_body(content_type: str | None, body: bytes) -> bool:
    """Whether a POST body is an RFC 8058 one-click request (section 3.2): the field
    ``List-Unsubscribe`` with the value ``One-Click``, form-urlencoded (also assumed when
    there is no content type) or as one ``multipart/form-data`` part. Other fields may
    come along. False for other bodies and content types, for a multipart type without a
    boundary, and for bodies over ``MAX_ONE_CLICK_BODY``; never raises on malformed input.
    Linear time."""
    if len(body) > MAX_ONE_CLICK_BODY:
        return False
    media_type, _, _ = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    if media_type in ("", "application/x-www-form-urlencoded"):
        return _urlencoded_one_click(body)
    if media_type == "multipart/form-data":
        boundary = _BOUNDARY.search(content_type or "")
        if boundary is None:
            return False
        value = boundary.group(1) if boundary.group(1) is not None else boundary.group(2)
        return _multipart_one_click(body, value.encode("latin-1", "replace"))
    return False


def mailto_address(token: str, domain: str) -> str:
    """``u+<token>@<domain>`` (the domain lowercased), the mailto unsubscribe address.
    Raises ``ValueError`` unless ``token`` is lowercase letters and digits (local parts
    may lose their case in transit), the local part fits 64 octets, and ``domain`` is an
    ASCII host name (IDNA A-labels for international names)."""
    local = MAILTO_PREFIX + token
    if not _MAILTO_TOKEN.fullmatch(token) or len(local) > _MAX_LOCAL_PART:
        msg = f"The token must be lowercase letters and digits, at most {_MAX_LOCAL_PART - 2}."
        raise ValueError(msg)
    domain = domain.lower()
    if not _DOMAIN.fullmatch(domain):
        raise ValueError("The domain must be an ASCII host name.")
    return f"{local}@{domain}"


def token_from_address(address: str) -> str | None:
    """The token of a mailto unsubscribe address (lowercased; ``<...>`` around it is
    allowed), or None when the address is not of that form. The token is not verified
    here, nor the domain compared with ours."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, _domain = address.rpartition("@")
    local = local.lower()
    if not at or not local.startswith(MAILTO_PREFIX) or len(local) > _MAX_LOCAL_PART:
        return None
    token = local[len(MAILTO_PREFIX) :]
    return token if _MAILTO_TOKEN.fullmatch(token) else None

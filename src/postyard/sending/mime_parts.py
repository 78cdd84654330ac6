"""MIME bodies with attachments and inline images, through ``email.message.MIMEPart`` under
``email.policy.SMTP``, where the stdlib is right (parts, transfer encodings, RFC 2231 file
names); every value it receives is checked first. Also the reference the direct writer of
text-only bodies (``mime_text``) is tested against."""

from __future__ import annotations

import email.policy
import mimetypes
import re
from email.message import MIMEPart
from functools import cache

from postyard.core.text import well_formed
from postyard.sending.addresses import header_text_problem
from postyard.sending.html_text import html_to_text
from postyard.sending.message_spec import Attachment, InvalidHeader, MessageSpec
from postyard.sending.mime_text import boundary_for, is_seven_bit

# CRLF line endings; 76 columns is the RFC 2045 section 6.7 limit for quoted-printable, and
# gives base64 lines of 76 characters. Part headers are ASCII (RFC 2047 / RFC 2231).
_PART_POLICY = email.policy.SMTP.clone(max_line_length=76)
_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"  # RFC 6838 section 4.2
_MIME_TYPE = re.compile(f"({_RESTRICTED_NAME})/({_RESTRICTED_NAME})")
_CONTENT_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,60}")
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def _text_part(content: str, subtype: str) -> MIMEPart:
    content = well_formed(content)
    seven_bit = is_seven_bit(content)
    part = MIMEPart(policy=_PART_POLICY)
    part.set_content(
        content, subtype=subtype, charset="utf-8", cte="7bit" if seven_bit else "quoted-printable"
    )
    return part


@cache
def _mime_types() -> mimetypes.MimeTypes:
    # A table with only Python's built-in map, so the guess never depends on the host's
    # mime.types files.
    return mimetypes.MimeTypes()


def _guess_type(filename: str) -> str:
    _, dot, extension = filename.rpartition(".")
    if not dot or not extension or "/" in extension or "\\" in extension:
        return "application/octet-stream"
    guessed, encoding = _mime_types().guess_type(f"file.{extension.lower()}", strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    # message/* may not be base64-encoded (RFC 2046 section 5.2.1): send such files as bytes.
    if guessed is None or guessed.startswith(("message/", "multipart/")):
        return "application/octet-stream"
    return guessed


def _attachment_part(index: int, attachment: Attachment, *, inline: bool) -> MIMEPart:
    prefix = f"Invalid `attachments[{index}]`:"
    problem = header_text_problem(attachment.filename)
    if problem is not None:
        raise InvalidHeader("attachments", f"{prefix} the filename contains {problem}.")
    content_type = attachment.content_type or _guess_type(attachment.filename)
    match = _MIME_TYPE.fullmatch(content_type)
    if match is None:
        msg = f"{prefix} {content_type!r} is not a content type like `image/png`."
        raise InvalidHeader("attachments", msg)
    maintype, subtype = match.group(1).lower(), match.group(2).lower()
    if maintype in ("multipart", "message"):
        msg = f"{prefix} the content type `{content_type}` cannot be sent as an attachment."
        raise InvalidHeader("attachments", msg)
    content_id = attachment.content_id
    if content_id is not None:
        content_id = content_id.removeprefix("<").removesuffix(">")
        if not _CONTENT_ID.fullmatch(content_id):
            msg = f"{prefix} {attachment.content_id!r} is not a usable content id."
            raise InvalidHeader("attachments", msg)
    part = MIMEPart(policy=_PART_POLICY)
    part.set_content(
        attachment.content,
        maintype,
        subtype,
        cte="base64",
        disposition="inline" if inline else "attachment",
        filename=attachment.filename or None,  # RFC 2231-encoded by the policy when non-ASCII
        cid=None if content_id is None else f"<{content_id}>",  # RFC 2392
    )
    return part


def _multipart(subtype: str, parts: list[MIMEPart], **params: str) -> MIMEPart:
    container = MIMEPart(policy=_PART_POLICY)
    container["Content-Type"] = f"multipart/{subtype}"
    for name, value in params.items():
        container.set_param(name, value)
    for part in parts:
        container.attach(part)
    return container


def _body(spec: MessageSpec) -> MIMEPart:
    """The MIME tree: mixed( related( alternative( plain, html ), inline… ), files… ),
    each level present only when needed (RFC 2046 section 5.1, RFC 2387)."""
    if spec.html is None:
        content = _text_part(spec.text or "", "plain")
    elif spec.text == "":
        content = _text_part(spec.html, "html")  # Resend: `text: ""` opts out of a text part
    else:
        text = html_to_text(spec.html) if spec.text is None else spec.text
        # RFC 2046 section 5.1.4: the plainest alternative first, the preferred one last.
        content = _multipart(
            "alternative", [_text_part(text, "plain"), _text_part(spec.html, "html")]
        )
    inline: list[MIMEPart] = []
    files: list[MIMEPart] = []
    for index, attachment in enumerate(spec.attachments):
        # An inline part only makes sense next to the HTML that refers to it.
        is_inline = attachment.content_id is not None and spec.html is not None
        part = _attachment_part(index, attachment, inline=is_inline)
        (inline if is_inline else files).append(part)
    if inline:
        content = _multipart("related", [content, *inline], type=content.get_content_type())
    if files:
        content = _multipart("mixed", [content, *files])
    return content


def _set_boundaries(root: MIMEPart, message_id: str) -> None:
    """Boundaries derived from the Message-ID (``mime_text.boundary_for``)."""
    bodies = [
        str(part.get_payload()).encode("utf-8", "surrogateescape")
        for part in root.walk()
        if not part.is_multipart()
    ]
    containers = [part for part in root.walk() if part.is_multipart()]
    for position, container in enumerate(containers):
        container.set_boundary(boundary_for(message_id, position, bodies))


def build_body_with_stdlib(spec: MessageSpec) -> bytes:
    """The MIME body (entity headers and content) through ``email.message``: the path for
    attachments and inline images, and the reference the direct writer is tested against."""
    root = _body(spec)
    _set_boundaries(root, spec.message_id)
    return root.as_bytes(policy=_PART_POLICY)

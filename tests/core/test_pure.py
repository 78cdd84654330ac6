"""Pure parts of core: ids, pagination parsing, validation messages, secrets, settings."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from postyard.core.db import role_urls
from postyard.core.errors import ConfigurationError, ValidationFailed
from postyard.core.http import validation_message
from postyard.core.ids import parse_uuid, uuid7, uuid7_batch
from postyard.core.pagination import PageRequest
from postyard.core.secrets import derive, load_or_create_secret


def test_uuid7_layout_and_order() -> None:
    ids = [uuid7(now_ms=1_700_000_000_000 + i) for i in range(50)]
    assert all(u.version == 7 for u in ids)
    assert all(u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids)
    assert ids[0].int >> 80 == 1_700_000_000_000
    assert len({uuid7() for _ in range(1000)}) == 1000


def test_uuid7_batch_has_the_same_layout() -> None:
    ids = uuid7_batch(1000, now_ms=1_700_000_000_000)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert {u.int >> 80 for u in ids} == {1_700_000_000_000}
    assert len(set(ids)) == 1000
    assert uuid7_batch(0) == []


def test_parse_uuid() -> None:
    value = uuid.uuid4()
    assert parse_uuid(str(value)) == value
    assert parse_uuid("nope") is None


def test_page_request_parsing() -> None:
    a, b = uuid7(), uuid7()
    assert PageRequest.parse(None, None, None) == PageRequest(limit=20)
    assert PageRequest.parse(5, str(a), None) == PageRequest(limit=5, after=a)
    assert PageRequest.parse(None, None, str(b)).before == b
    for limit, after, before in [
        (0, None, None),
        (101, None, None),
        (None, "x", None),
        (None, str(a), str(b)),
        (None, None, "1"),
    ]:
        with pytest.raises(ValidationFailed):
            PageRequest.parse(limit, after, before)


@pytest.mark.parametrize(
    ("error", "status", "fragment"),
    [
        ({"type": "json_invalid", "loc": ("body",)}, 400, "The request body is not valid JSON."),
        (
            {"type": "json_invalid", "loc": ("body", 3), "ctx": {"error": "trailing comma"}},
            400,
            "The request body is not valid JSON at character 3: trailing comma.",
        ),
        ({"type": "missing", "loc": ("body",)}, 422, "body is required"),
        ({"type": "missing", "loc": ("body", "name")}, 422, "`name` field is required"),
        ({"type": "extra_forbidden", "loc": ("body", "x")}, 422, "Unknown field `x`"),
        (
            {
                "type": "string_type",
                "loc": ("body", "name"),
                "msg": "Input should be a valid string",
            },
            422,
            "`name`: Input should be a valid string",
        ),
    ],
)
def test_validation_messages(error: dict[str, object], status: int, fragment: str) -> None:
    got_status, message = validation_message([error])
    assert got_status == status
    assert fragment in message


def test_secret_file_is_created_once_with_private_mode(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path, None)
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secret(tmp_path, None) == first
    assert load_or_create_secret(tmp_path, "configured") == b"configured"
    assert derive(first, "a") != derive(first, "b")


def test_unwritable_secret_location_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_or_create_secret(tmp_path / "missing" / "dir", None)


def test_role_urls_keep_host_and_database() -> None:
    urls = role_urls(
        "postgresql://owner:pw@db.example:5433/mail?sslmode=require",
        app_role="app",
        system_role="sys",
        app_password="a@b/c d:%",
        system_password="s",
    )
    assert urls.owner.startswith("postgresql+asyncpg://owner:pw@db.example:5433/mail")
    app = make_url(urls.app)
    assert (app.username, app.password, app.host, app.port, app.database) == (
        "app",
        "a@b/c d:%",
        "db.example",
        5433,
        "mail",
    )
    assert "sslmode=require" in urls.system

"""Pure parts of tenancy: tokens and slugs."""

from __future__ import annotations

import pytest

from postyard.tenancy import keys
from postyard.tenancy.slugs import is_valid_slug, slugify


def test_tokens_are_prefixed_unique_and_verifiable() -> None:
    first, second = keys.generate_token(), keys.generate_token()
    assert first.token != second.token
    assert first.token.startswith("py_")
    assert first.prefix == f"py_{first.lookup_id}"
    assert first.token.startswith(first.prefix + "_")
    assert keys.parse_lookup_id(first.token) == first.lookup_id
    assert keys.token_matches(first.token, first.digest)
    assert not keys.token_matches(second.token, first.digest)
    assert first.token not in first.digest.hex()


@pytest.mark.parametrize(
    "token",
    ["", "py_", "re_abc", "py_short_secret", "py_" + "a" * 12 + "_" + "b" * 42, "x" * 300],
)
def test_malformed_tokens_have_no_lookup_id(token: str) -> None:
    assert keys.parse_lookup_id(token) is None


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Acme", "acme"),
        ("Acme Inc.", "acme-inc"),
        ("  Ünïcödé  Café ", "unicode-cafe"),
        ("a--b", "a-b"),
        ("!!!", ""),
        ("x" * 80, "x" * 63),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


@pytest.mark.parametrize(
    ("slug", "valid"),
    [
        ("acme", True),
        ("a-1", True),
        ("-a", False),
        ("a-", False),
        ("A", False),
        ("a--b", False),
        ("", False),
        ("a" * 63, True),
        ("a" * 64, False),
        ("a b", False),
    ],
)
def test_slug_validation(slug: str, valid: bool) -> None:
    assert is_valid_slug(slug) is valid

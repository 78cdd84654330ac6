"""The fast path for plain addresses agrees with email-validator wherever it answers."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from postyard.sending.simple_mailbox import simple_addr_spec

_PIECES = [
    "a", "Z", "0", "9", ".", "..", "-", "--", "_", "+", "%", "@", "é", " ", "xn--", "test",
    "local", "localhost", "onion", "arpa", "invalid", "com", "COM", "x" * 63, "y" * 64, "1",
]  # fmt: skip


def _reference(addr_spec: str) -> tuple[str, str] | None:
    try:
        valid = validate_email(
            addr_spec,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
            globally_deliverable=True,
            test_environment=True,
        )
    except EmailNotValidError:
        return None
    return valid.local_part, valid.ascii_domain


def _generated(count: int) -> list[str]:
    rng = random.Random(20261201)
    out = []
    for _ in range(count):
        local = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 4)))
        labels = [
            "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 3)))
            for _ in range(rng.randint(1, 4))
        ]
        out.append(f"{local}@{'.'.join(labels)}")
        # and one that looks like a real address, with the odd character out of place
        plausible = "abcXYZ019._+-%"
        local = "".join(rng.choice(plausible) for _ in range(rng.randint(1, 12)))
        host = "".join(rng.choice("abz09-") for _ in range(rng.randint(1, 10)))
        tld = rng.choice(["com", "ORG", "test", "local", "io", "c0", "x", "museum"])
        out.append(f"{local}@{host}.{tld}")
    return out


FIXED = [
    "ann@example.com", "Ann.B@Example.COM", "a+tag@sub.example.org", "a@foo.test",
    "a@b.c", "a@localhost", "a@x.local", "a@x.onion", "a@1.2.3.4", "a@x.123", "a..b@x.com",
    ".a@x.com", "a.@x.com", "a@-x.com", "a@x-.com", "a@xn--bcher-kva.de", "a@ab--cd.com",
    "a@" + "x" * 64 + ".com", "y" * 65 + "@x.com", "a@x.c0m", "a@x.co", "@x.com", "a@",
]  # fmt: skip


@pytest.mark.parametrize("addr_spec", FIXED)
def test_fixed_cases_agree(addr_spec: str) -> None:
    fast = simple_addr_spec(addr_spec)
    if fast is not None:
        assert fast == _reference(addr_spec)


def test_generated_addresses_agree_and_the_fast_path_takes_the_common_ones() -> None:
    answered = 0
    for addr_spec in _generated(20_000):
        fast = simple_addr_spec(addr_spec)
        if fast is None:
            continue
        answered += 1
        assert fast == _reference(addr_spec), addr_spec
    assert answered > 1_000  # the corpus exercises the fast path, not only its refusals
    assert simple_addr_spec("ann@example.com") == ("ann", "example.com")

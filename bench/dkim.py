"""DKIM signing benchmark: Postyard's signer against dkimpy's ``dkim.sign`` on the same
messages, keys and headers, measured in the same run on one core.

    .venv/bin/python bench/dkim.py [--seconds 1.0] [--repeats 3]

dkimpy is the reference: a widely used Python signer whose RSA is pure Python (``pow``) and
whose Ed25519 is PyNaCl (libsodium). Both sides sign relaxed/relaxed and cover the same
header fields; every output is checked by dkimpy's verifier before it is timed. Figures
are signatures per second (median of the repeats); the ratio is Postyard / dkimpy.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import _harness as h
from cryptography.hazmat.primitives import serialization

from postyard.domains.dkim import (
    DkimKey,
    DkimSigner,
    generate_ed25519_key,
    generate_rsa_key,
    public_record,
    signed_header_names,
    split_message,
)
from postyard.sending.addresses import parse_address
from postyard.sending.mime import Attachment, MessageSpec, build_message

DOMAIN = "bench.example"
T = 1_772_600_000


def import_dkimpy() -> ModuleType:
    """dkimpy's ``dkim`` package. Run as a script, this file's folder leads ``sys.path`` and
    this file's name would shadow dkimpy, so that entry is set aside for the import."""
    here = Path(__file__).resolve().parent
    saved = sys.path[:]
    sys.path[:] = [entry for entry in saved if Path(entry or ".").resolve() != here]
    try:
        return importlib.import_module("dkim")
    finally:
        sys.path[:] = saved


dkim = import_dkimpy()


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    ours: Callable[[], bytes]
    reference: Callable[[], bytes]


def messages() -> dict[str, bytes]:
    """A 5 KB text+html message (as in the performance anchors) and a 100 KB one."""
    base = MessageSpec(
        sender=parse_address("Bench <bench@bench.example>", field="from"),
        to=(parse_address("Ann <ann@example.com>", field="to"),),
        subject="Your weekly summary",
        html="<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40 + "</p>",
        headers=(("List-Unsubscribe", "<https://bench.example/u/t0k3n>"),),
        message_id="<bench-1@bench.example>",
        date=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
    )
    attachment = Attachment("report.pdf", bytes(range(256)) * 280)
    large = dataclasses.replace(base, attachments=(attachment,))
    return {"5 KB": build_message(base), "100 KB": build_message(large)}


def rate(function: Callable[[], bytes], seconds: float, repeats: int) -> float:
    """Median calls per second over ``repeats`` runs of at least ``seconds`` each."""
    function()  # warm up (first-call caches)
    rates = []
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            function()
            calls += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(calls / (now - start))
    return statistics.median(rates)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    h.standard_arguments(parser, messages=None)  # --full changes nothing here
    args = parser.parse_args(argv)

    rsa_pem, ed_pem = generate_rsa_key(), generate_ed25519_key()
    rsa_key = DkimKey(DOMAIN, "rsa", "rsa-sha256", rsa_pem)
    ed_key = DkimKey(DOMAIN, "ed", "ed25519-sha256", ed_pem)
    records = {
        f"rsa._domainkey.{DOMAIN}.".encode(): public_record(rsa_pem).encode(),
        f"ed._domainkey.{DOMAIN}.".encode(): public_record(ed_pem).encode(),
    }
    # dkimpy reads RSA keys as PKCS#1 PEM and Ed25519 keys as the base64 of the raw seed.
    rsa_loaded = serialization.load_pem_private_key(rsa_pem, password=None)
    ed_loaded = serialization.load_pem_private_key(ed_pem, password=None)
    rsa_pkcs1 = rsa_loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    ed_seed = base64.b64encode(
        ed_loaded.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )
    rsa_only, ed_only = DkimSigner([rsa_key]), DkimSigner([ed_key])
    both = DkimSigner([rsa_key, ed_key])

    def dkimpy(message: bytes, selector: bytes, key: bytes, algorithm: bytes) -> bytes:
        names = signed_header_names(split_message(message)[0])
        header = dkim.sign(
            message,
            selector,
            DOMAIN.encode(),
            key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=algorithm,
            include_headers=[name.encode() for name in names],
        )
        return bytes(header) + message

    cases: list[Case] = []
    for size, message in messages().items():

        def ref_rsa(m: bytes = message) -> bytes:
            return dkimpy(m, b"rsa", rsa_pkcs1, b"rsa-sha256")

        def ref_ed(m: bytes = message) -> bytes:
            return dkimpy(m, b"ed", ed_seed, b"ed25519-sha256")

        def ref_both(m: bytes = message) -> bytes:
            return dkimpy(ref_rsa(m), b"ed", ed_seed, b"ed25519-sha256")

        cases += [
            Case(f"RSA-2048, {size}", partial(rsa_only.sign, message, timestamp=T), ref_rsa),
            Case(f"Ed25519, {size}", partial(ed_only.sign, message, timestamp=T), ref_ed),
            Case(f"both (2 sigs), {size}", partial(both.sign, message, timestamp=T), ref_both),
        ]

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    for case in cases:  # only correct signatures are worth timing
        for produce in (case.ours, case.reference):
            signed = produce()
            verifier = dkim.DKIM(signed)
            count = signed.count(b"DKIM-Signature:")
            if not all(verifier.verify(idx=i, dnsfunc=dns) for i in range(count)):
                raise SystemExit(f"{case.label}: a signature does not verify")

    facts = (
        f"DKIM signing, one core: Python {platform.python_version()}, "
        f"cryptography {version('cryptography')}, dkimpy {version('dkimpy')}, "
        f"PyNaCl {version('pynacl')}; median of {args.repeats} x {args.seconds:g} s"
    )
    rows: list[tuple[str, str, str, str]] = []
    figures: list[h.Figure] = []
    for case in cases:
        ours = rate(case.ours, args.seconds, args.repeats)
        reference = rate(case.reference, args.seconds, args.repeats)
        rows.append((case.label, f"{ours:,.0f}", f"{reference:,.0f}", f"{ours / reference:.1f}x"))
        key = case.label.split(",")[0].split(" ")[0].lower().replace("-", "")
        size = case.label.rsplit(", ", 1)[1].replace(" ", "").lower()
        figures.append(
            h.Figure(f"dkim.{key}.{size}", f"DKIM {case.label} signatures", ours, "msgs/s",
                     "dkimpy", reference)
        )  # fmt: skip
    table = h.markdown_table(("Case", "Postyard msgs/s", "dkimpy msgs/s", "Ratio"), rows)
    text = (
        f"### Run of {h.today_utc()}\n\n`bench/dkim.py --seconds {args.seconds:g} --repeats "
        f"{args.repeats}`. Machine: {h.machine_facts()}; Postyard (git "
        f"{h.git_revision(h.REPOSITORY)}). {facts}.\n\n{table}\n"
    )
    print(text)
    if not args.no_docs:
        h.replace_section(h.PERFORMANCE_DOC, "dkim", text)
        print("updated the dkim section of docs/performance.md")
    # The summary keeps the common case: both signatures on a 5 KB message.
    h.report_figures("dkim", [f for f in figures if f.key == "dkim.both.5kb"])


if __name__ == "__main__":
    main(sys.argv[1:])

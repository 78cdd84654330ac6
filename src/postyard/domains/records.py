"""The DNS records a domain publishes, and what their answers mean (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from postyard.domains.types import DnsPolicy, DomainStatus, ExpectedRecord, RecordStatus

VERIFICATION_WINDOW = timedelta(hours=72)
DMARC_RECOMMENDED = "v=DMARC1; p=none;"


class Seen(StrEnum):
    MATCH = "match"
    MISSING = "missing"
    WRONG = "wrong"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class PublishedKey:
    selector: str
    public_record: str
    required: bool = True
    """False for a rotation's new key while the current one still signs: its record being
    pending must not make a verified domain unverified."""


def expected_records(
    domain: str,
    *,
    return_path: str,
    keys: Sequence[PublishedKey],
    policy: DnsPolicy,
    tracking_subdomain: str | None,
) -> list[ExpectedRecord]:
    """Every record to publish, in the order dashboards list them."""
    rp = f"{return_path}.{domain}"
    records = [
        ExpectedRecord(
            key=f"dkim:{k.selector}",
            record="DKIM",
            type="TXT",
            name=f"{k.selector}._domainkey",
            fqdn=f"{k.selector}._domainkey.{domain}",
            value=k.public_record,
            required=k.required,
        )
        for k in keys
    ]
    spf = f"v=spf1 {policy.spf_mechanisms} ~all"
    records += [
        ExpectedRecord("spf", "SPF", "TXT", return_path, rp, spf, True),
        ExpectedRecord("mx", "SPF", "MX", return_path, rp, policy.return_path_mx_host, True, 10),
        ExpectedRecord(
            "dmarc", "DMARC", "TXT", "_dmarc", f"_dmarc.{domain}", DMARC_RECOMMENDED, False
        ),
    ]
    if tracking_subdomain and policy.tracking_host:
        records.append(
            ExpectedRecord(
                "tracking",
                "Tracking",
                "CNAME",
                tracking_subdomain,
                f"{tracking_subdomain}.{domain}",
                policy.tracking_host,
                True,
            )
        )
    return records


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        name, _, value = part.partition("=")
        tags[name.strip().lower()] = "".join(value.split())
    return tags


def _host(name: str) -> str:
    return name.rstrip(".").lower()


def judge(record: ExpectedRecord, answers: Sequence[str] | None) -> Seen:
    """Compare DNS answers (TXT strings joined, MX exchanges, CNAME targets; None for a DNS
    error, [] for no such record) with the record we expect."""
    if answers is None:
        return Seen.ERROR
    if not answers:
        return Seen.MISSING
    if record.record == "DKIM":
        want = _tags(record.value).get("p")
        return Seen.MATCH if any(_tags(a).get("p") == want for a in answers) else Seen.WRONG
    if record.key == "spf":
        spf = [a for a in answers if a.lower().startswith("v=spf1")]
        if not spf:
            return Seen.MISSING
        wanted = set(record.value.lower().split()[1:-1])
        return Seen.MATCH if any(wanted <= set(a.lower().split()) for a in spf) else Seen.WRONG
    if record.key == "dmarc":
        return Seen.MATCH if any(a.lower().startswith("v=dmarc1") for a in answers) else Seen.WRONG
    # MX exchanges and CNAME targets
    return Seen.MATCH if any(_host(a) == _host(record.value) for a in answers) else Seen.WRONG


def record_status(seen: Seen, *, expired: bool) -> RecordStatus:
    if seen is Seen.MATCH:
        return RecordStatus.VERIFIED
    if seen is Seen.ERROR:
        return RecordStatus.TEMPORARY_FAILURE
    if seen is Seen.WRONG or expired:
        return RecordStatus.FAILED
    return RecordStatus.PENDING


def domain_status(
    records: Sequence[ExpectedRecord],
    statuses: Mapping[str, RecordStatus],
    *,
    started_at: datetime,
    now: datetime,
) -> DomainStatus:
    """The domain's status from its required records' statuses (Resend's vocabulary)."""
    required = [statuses.get(r.key, RecordStatus.NOT_STARTED) for r in records if r.required]
    if all(s is RecordStatus.VERIFIED for s in required):
        return DomainStatus.VERIFIED
    if any(s is RecordStatus.TEMPORARY_FAILURE for s in required):
        return DomainStatus.TEMPORARY_FAILURE
    # A record with the wrong value needs the user's attention even when others verified.
    if now - started_at >= VERIFICATION_WINDOW or any(s is RecordStatus.FAILED for s in required):
        return DomainStatus.FAILED
    if any(s is RecordStatus.VERIFIED for s in required):
        return DomainStatus.PARTIALLY_VERIFIED
    return DomainStatus.PENDING

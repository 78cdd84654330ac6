"""Bounce classification as data: what a refusal says about the recipient, the message or us.

An SMTP reply (or a DSN's status and diagnostic) is matched against an ordered table of text
patterns seen from the big mailbox providers and the common MTAs, then against the RFC 3463
enhanced status code, then against the basic reply code. The first match gives a category;
the category and the reply class (4 or 5) give the bounce type:

- ``permanent``: the address or its domain does not exist or is disabled. Suppress it.
- ``block``: the receiver refused for policy, authentication, content or reputation reasons.
  Not the recipient's fault: never suppress; shaping uses it.
- ``transient``: may work later (4yz replies; mailbox full and size refusals).
- ``undetermined``: a refusal that says nothing we recognise. Not suppressed.

Text comes first because providers put misleading enhanced codes on clear texts (Microsoft
answers ``5.4.1`` for an unknown recipient, many servers ``5.7.1`` for everything). Nothing
here does I/O; the table is tested against a corpus of replies (tests/delivery/data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from postyard.delivery.outcome import OutcomeKind, RecipientOutcome, SmtpStage


class BounceType(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    BLOCK = "block"
    UNDETERMINED = "undetermined"


class BounceCategory(StrEnum):
    BAD_MAILBOX = "bad_mailbox"
    BAD_DOMAIN = "bad_domain"
    INACTIVE_MAILBOX = "inactive_mailbox"
    MAILBOX_FULL = "mailbox_full"
    MESSAGE_TOO_LARGE = "message_too_large"
    SPAM_CONTENT = "spam_content"
    REPUTATION = "reputation"
    POLICY = "policy"
    RATE_LIMITED = "rate_limited"
    TEMPORARY = "temporary"
    UNDETERMINED = "undetermined"


# category -> (type when the failure is final (5yz), Resend/SES subType)
_CATEGORY = {
    BounceCategory.BAD_MAILBOX: (BounceType.PERMANENT, "NoEmail"),
    BounceCategory.BAD_DOMAIN: (BounceType.PERMANENT, "BadDomain"),
    BounceCategory.INACTIVE_MAILBOX: (BounceType.PERMANENT, "MailboxDisabled"),
    BounceCategory.MAILBOX_FULL: (BounceType.TRANSIENT, "MailboxFull"),
    BounceCategory.MESSAGE_TOO_LARGE: (BounceType.TRANSIENT, "MessageTooLarge"),
    BounceCategory.SPAM_CONTENT: (BounceType.BLOCK, "ContentRejected"),
    BounceCategory.REPUTATION: (BounceType.BLOCK, "Blocked"),
    BounceCategory.POLICY: (BounceType.BLOCK, "Policy"),
    BounceCategory.RATE_LIMITED: (BounceType.TRANSIENT, "RateLimited"),
    BounceCategory.TEMPORARY: (BounceType.TRANSIENT, "General"),
    BounceCategory.UNDETERMINED: (BounceType.UNDETERMINED, "Undetermined"),
}
# Resend's (SES's) bounce.type vocabulary has no "block": a block may clear later.
_RESEND_TYPE = {
    BounceType.PERMANENT: "Permanent",
    BounceType.TRANSIENT: "Transient",
    BounceType.BLOCK: "Transient",
    BounceType.UNDETERMINED: "Undetermined",
}
_ADDRESS_CATEGORIES = frozenset(
    {BounceCategory.BAD_MAILBOX, BounceCategory.BAD_DOMAIN, BounceCategory.INACTIVE_MAILBOX}
)


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


# Ordered: the first pattern found in the reply text wins. Rate limits come first, blocks
# before address failures (an RBL refusal often also says "rejected"); refusals of our sender
# address before "domain not found" (Postfix's "Sender address rejected: Domain not found").
TEXT_RULES: tuple[tuple[BounceCategory, re.Pattern[str]], ...] = (
    (
        # First: "slow down" is what shaping needs to hear, whatever else the reply says.
        BounceCategory.RATE_LIMITED,
        _rx(
            r"too many|rate limit|rate that prevents|unusual rate|sending (?:limit|quota)",
            r"try (?:again )?later|temporarily (?:deferred|rejected|unavailable|blocked)",
            r"slow down|throttl|greylist|graylist|deferred due to|server busy|\bTS0\d\b",
            r"connection limit|too busy",
        ),
    ),
    (
        BounceCategory.REPUTATION,
        _rx(
            r"spamhaus|spamcop|barracuda|sorbs|uceprotect|abuseat|\bsurbl\b",
            r"\b(?:rbl|dnsbl|dnsrbl)\b",
            r"block ?list|black ?list|deny ?list",
            r"blocked using|listed (?:at|in|on|by)|is listed|\bBL\d{2}\b",
            r"reputation|banned sending ip|traffic not accepted from this ip",
            r"not accepted from (?:this|your) ip|ip (?:address )?(?:has been )?blocked",
            r"\bS3140\b|\bS3150\b|RP-00\d",
        ),
    ),
    (
        BounceCategory.SPAM_CONTENT,
        _rx(
            r"\bspam\b|unsolicited|\bjunk\b|bulk mail",
            r"content (?:rejected|filter|policy)|message content|looks suspicious",
            r"virus|malware|phish|infected|security issue|potentially (?:harmful|dangerous)",
            r"5\.7\.350",
        ),
    ),
    (
        BounceCategory.BAD_MAILBOX,
        # Microsoft's directory-based edge blocking and lookup failures, before "access denied".
        _rx(r"RecipientNotFound", r"recipient address rejected: access denied"),
    ),
    (
        BounceCategory.POLICY,
        _rx(
            r"\bdmarc\b|\bspf\b|\bdkim\b|\barc\b",
            r"unauthenticated|not authenticated|authentication (?:required|failed)",
            r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|not permitted to relay",
            r"unable to relay|we do not relay",
            r"sender (?:address )?(?:rejected|denied|refused|blocked|unknown|verify failed)",
            r"sender domain|from (?:address|domain)",
            r"reverse dns|\bptr\b|\brdns\b|\bhelo\b|\behlo\b|hostname does not",
            r"local policy|by policy|policy (?:rejection|violation|reasons)|\bCS0\d\b",
            r"administrative prohibition|not authori[sz]ed|access denied|forbidden",
            r"\bTLS (?:required|is required)|encryption required",
        ),
    ),
    (
        BounceCategory.MAILBOX_FULL,
        _rx(
            r"over ?quota|quota (?:exceeded|full)|exceeded (?:its|the|storage|their) ",
            r"(?:mailbox|inbox|mail ?box|account|mail folder) (?:is |was )?full",
            r"insufficient (?:system )?storage|out of storage|storage (?:allocation|limit)",
            r"mailbox size limit|disk (?:full|quota)",
        ),
    ),
    (
        BounceCategory.MESSAGE_TOO_LARGE,
        _rx(
            r"(?:message|mail|email) (?:size|too (?:big|large)|length exceeds)",
            r"size (?:exceeds|limit)|exceeds (?:the )?(?:\w+ )?(?:size|maximum)",
            r"too (?:big|large) for|message is too (?:big|large)",
        ),
    ),
    (
        BounceCategory.INACTIVE_MAILBOX,
        _rx(
            r"(?:account|mailbox|user|address) (?:(?:that you tried to reach )?is |has been |was )?"
            r"(?:disabled|inactive|deactivated|suspended|locked|expired|closed|blocked)",
            r"no longer (?:active|in use|available|valid|exists)",
        ),
    ),
    (
        BounceCategory.BAD_DOMAIN,
        _rx(
            r"domain (?:\S+ )?(?:not found|does not exist|doesn't exist|is not valid)",
            r"host (?:or domain name )?(?:unknown|not found)|unknown host",
            r"no (?:mx|mail exchanger|valid mx)|null mx|does not accept mail",
            r"unrouteable (?:mail )?domain|unable to route|no route to (?:host|domain)",
            r"no (?:mx, )?a or aaaa records|invalid domain|invalid address literal",
        ),
    ),
    (
        BounceCategory.BAD_MAILBOX,
        _rx(
            r"user ?unknown|unknown user|no such (?:user|mailbox|recipient|address|account|person)",
            r"(?:does not|doesn't|did not|no longer) exist",
            r"(?:recipient|user|mailbox|address|account)s? (?:\S+ )?not found",
            r"invalid (?:recipient|mailbox|address|user|e-?mail)",
            r"unknown (?:recipient|mailbox|local[- ]?part|address|alias)",
            r"mailbox (?:unavailable|not available|not found|does not exist)",
            r"unrouteable address|no mailbox|bad destination mailbox|addressee unknown",
            r"recipient (?:address )?rejected|rejected recipient|invalid rcpt",
            r"doesn't have an? \S+ account|user doesn't have|not our customer",
            r"verification failed|undeliverable address|no valid recipients",
        ),
    ),
)

# RFC 3463 subject.detail -> category, for codes whose text matched nothing above.
ENHANCED_RULES: dict[str, BounceCategory] = {
    "1.1": BounceCategory.BAD_MAILBOX,
    "1.2": BounceCategory.BAD_DOMAIN,
    "1.3": BounceCategory.BAD_MAILBOX,
    "1.6": BounceCategory.BAD_MAILBOX,
    "1.7": BounceCategory.POLICY,
    "1.8": BounceCategory.POLICY,
    "1.10": BounceCategory.BAD_DOMAIN,
    "2.1": BounceCategory.INACTIVE_MAILBOX,
    "2.2": BounceCategory.MAILBOX_FULL,
    "2.3": BounceCategory.MESSAGE_TOO_LARGE,
    "3.1": BounceCategory.TEMPORARY,
    "3.2": BounceCategory.TEMPORARY,
    "3.4": BounceCategory.MESSAGE_TOO_LARGE,
    "4.4": BounceCategory.BAD_DOMAIN,
    "4.5": BounceCategory.RATE_LIMITED,
}
# Whole subjects: X.7.* is security or policy (RFC 3463 §3.8), X.3/X.4 the receiving
# system or the network.
ENHANCED_SUBJECTS: dict[str, BounceCategory] = {
    "7": BounceCategory.POLICY,
    "3": BounceCategory.TEMPORARY,
    "4": BounceCategory.TEMPORARY,
}

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class Classification:
    category: BounceCategory
    type: BounceType

    @property
    def suppresses(self) -> bool:
        """Whether the address itself should be suppressed (a permanent address failure)."""
        return self.type is BounceType.PERMANENT

    @property
    def resend_type(self) -> str:
        return _RESEND_TYPE[self.type]

    @property
    def sub_type(self) -> str:
        return _CATEGORY[self.category][1]


def categorize(
    text: str, *, enhanced: str | None = None, code: int | None = None
) -> BounceCategory:
    """The category of a refusal: text patterns, then the enhanced status code (given, or the
    first one in ``text``), then the basic code. Never raises."""
    for category, pattern in TEXT_RULES:
        if pattern.search(text):
            return category
    status = _STATUS.match(enhanced) if enhanced else _STATUS.search(text)
    if status is not None:
        _, subject, detail = status.groups()
        found = ENHANCED_RULES.get(f"{subject}.{detail}") or ENHANCED_SUBJECTS.get(subject)
        if found is not None:
            return found
    if code == 552:
        # RFC 5321 §4.2.3: "exceeded storage allocation".
        return BounceCategory.MAILBOX_FULL
    if code is not None and code // 100 == 4:
        return BounceCategory.TEMPORARY
    return BounceCategory.UNDETERMINED


def classification_of(category: BounceCategory, *, final: bool) -> Classification:
    """Type a category: a temporary (4yz) failure is ``transient`` whatever it says."""
    if not final:
        return Classification(category, BounceType.TRANSIENT)
    return Classification(category, _CATEGORY[category][0])


def classify(text: str, *, enhanced: str | None = None, code: int | None = None) -> Classification:
    """Classify a reply or a DSN diagnostic; final unless the code or status class is 4."""
    status = _STATUS.match(enhanced) if enhanced else _STATUS.search(text)
    temporary = (code is not None and code // 100 == 4) or (
        code is None and status is not None and status.group(1) == "4"
    )
    return classification_of(categorize(text, enhanced=enhanced, code=code), final=not temporary)


def classify_outcome(
    outcome: RecipientOutcome, *, recipients_in_transaction: int = 1
) -> Classification | None:
    """The classification of a BOUNCED outcome at send time (None for other outcomes).

    Only a refusal that names the recipient can condemn the address: a RCPT reply, or a DATA
    reply in a one-recipient transaction, or a DNS verdict on its domain. A refusal of MAIL
    FROM is about our sender, so an address category there counts as policy; a DATA refusal
    for several recipients at once is at most ``undetermined`` for the address.
    """
    if outcome.kind is not OutcomeKind.BOUNCED:
        return None
    reply = outcome.reply
    if reply is None:
        category = categorize(outcome.detail)
    else:
        category = categorize(reply.text, enhanced=reply.enhanced, code=reply.code)
    if category in _ADDRESS_CATEGORIES:
        if outcome.stage is SmtpStage.MAIL:
            category = BounceCategory.POLICY
        elif outcome.stage is SmtpStage.DATA and recipients_in_transaction > 1:
            category = BounceCategory.UNDETERMINED
    return classification_of(category, final=True)

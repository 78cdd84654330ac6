"""Destination sites: recipient domains rolled up by who runs their mail (pure).

Providers host millions of domains behind the same MX hosts, and they rate-limit by the
sending IP across all of them, so shaping and holds key on the *site* (Google, Microsoft, …)
rather than on the recipient domain. A domain's site comes from its MX host names when they
are known (``site_of_mx``) and otherwise from the providers' own consumer domains
(``site_of_domain``); every other domain is a site of its own, named by the domain, shaped
by the ``default`` policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_SITE = "default"


@dataclass(frozen=True, slots=True)
class SiteRule:
    name: str
    mx_suffixes: tuple[str, ...]
    """MX host names ending in one of these belong to the site (leading dot: subdomains)."""
    domains: tuple[str, ...]
    """The provider's own consumer domains, known without asking DNS."""


SITE_RULES: tuple[SiteRule, ...] = (
    SiteRule("google", (".google.com", ".googlemail.com"), ("gmail.com", "googlemail.com")),
    SiteRule(
        "microsoft",
        (".outlook.com", ".protection.outlook.com", ".hotmail.com"),
        ("outlook.com", "hotmail.com", "live.com", "msn.com"),
    ),
    SiteRule(
        "yahoo",
        (".yahoodns.net", ".yahoo.com"),
        ("yahoo.com", "ymail.com", "rocketmail.com", "aol.com"),
    ),
    SiteRule("apple", (".icloud.com", ".me.com"), ("icloud.com", "me.com", "mac.com")),
)
KNOWN_SITES = frozenset(rule.name for rule in SITE_RULES)


def _host(name: str) -> str:
    return name.rstrip(".").lower()


def site_of_mx(domain: str, mx_hosts: Iterable[str]) -> str:
    """The site of ``domain`` given its MX host names: the first host that matches a rule
    decides; a domain no rule claims is its own site (its name)."""
    for host in map(_host, mx_hosts):
        for rule in SITE_RULES:
            if any(host.endswith(suffix) for suffix in rule.mx_suffixes):
                return rule.name
    return site_of_domain(domain)


def site_of_domain(domain: str) -> str:
    """The site of ``domain`` without DNS: a provider's consumer domain gives the provider,
    anything else is its own site."""
    wanted = _host(domain)
    for rule in SITE_RULES:
        if wanted in rule.domains:
            return rule.name
    return wanted

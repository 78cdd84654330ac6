"""Who a message is sent as: the DKIM signer and the return-path domain of its From domain,
when that domain is verified. Cached per worker for a minute (keys change rarely; a new key
signs once its DNS record verifies, which takes longer than that anyway)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from postyard.core.clock import Clock
from postyard.core.crypto import decrypt_secret
from postyard.core.db import Database, TenantId
from postyard.domains import senders
from postyard.domains import service as domains
from postyard.domains.dkim import DkimKey, DkimSigner

TTL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class SenderIdentity:
    signer: DkimSigner | None
    return_path_domain: str | None


UNVERIFIED = SenderIdentity(signer=None, return_path_domain=None)


class IdentityCache:
    def __init__(self, db: Database, kek: bytes, clock: Clock) -> None:
        self._db = db
        self._kek = kek
        self._clock = clock
        self._entries: dict[tuple[TenantId, str], tuple[datetime, SenderIdentity]] = {}

    async def get(self, tenant_id: TenantId, domain: str) -> SenderIdentity:
        now = self._clock.now()
        cached = self._entries.get((tenant_id, domain))
        if cached is not None and cached[0] > now:
            return cached[1]
        identity = await self._load(tenant_id, domain)
        self._entries[(tenant_id, domain)] = (now + TTL, identity)
        return identity

    async def _load(self, tenant_id: TenantId, domain: str) -> SenderIdentity:
        async with self._db.system_tx(reason="delivery worker: load signing keys") as session:
            material = await senders.signing_material(session, tenant_id, domain)
        if material is None:
            return UNVERIFIED
        keys = [
            DkimKey(
                domain=material.domain,
                selector=selector,
                algorithm="ed25519-sha256" if algorithm == "ed25519-sha256" else "rsa-sha256",
                private_pem=decrypt_secret(
                    self._kek, blob, tenant_id=tenant_id, purpose=domains.dkim_purpose(key_id)
                ),
            )
            for key_id, selector, algorithm, blob in material.keys
        ]
        return SenderIdentity(
            signer=DkimSigner(keys) if keys else None,
            return_path_domain=material.return_path,
        )

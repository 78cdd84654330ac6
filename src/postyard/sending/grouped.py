"""Single messages stored by group commit (``group_commit.GroupCommitter``): the API's
single sends and the SMTP relay's messages of concurrent requests or sessions of one API
key share one tenant transaction; each caller gets its own answer once that transaction
committed. Messages with an idempotency key do not come here: their key's lock and record
belong in a transaction of their own."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from postyard.core.clock import Clock
from postyard.core.db import Database, caused_by_data
from postyard.sending.accept import AcceptOptions, accept_each
from postyard.sending.compose import ComposedMessage
from postyard.sending.group_commit import GroupCommitter
from postyard.tenancy.types import Principal

# Larger messages commit alone: a group of them would be one statement of hundreds of MB.
GROUP_COMMIT_MAX_MESSAGE_BYTES = 256 * 1024


class GroupedAccept:
    """Per process and event loop: create it at start-up with the accept options of its
    entry point (API or SMTP); ``aclose`` on exit."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        options: AcceptOptions,
        *,
        window: float = 0.0,
        max_messages: int = 100,
    ) -> None:
        self._db = db
        self._clock = clock
        self.options = options
        self._groups: GroupCommitter[Principal, ComposedMessage, uuid.UUID] = GroupCommitter(
            self._store,
            window=window,
            max_items=max_messages,
            split_on=caused_by_data,
        )

    async def accept(self, principal: Principal, message: ComposedMessage) -> uuid.UUID:
        """``message``'s id once the transaction that stored it committed. Raises its own
        refusal (DomainNotVerified) or its group's database error; nothing of it is stored
        then. A message over GROUP_COMMIT_MAX_MESSAGE_BYTES has a transaction of its own."""
        if len(message.raw) > GROUP_COMMIT_MAX_MESSAGE_BYTES:
            (result,) = await self._store(principal, [message])
            if isinstance(result, Exception):
                raise result
            return result
        return await self._groups.submit(principal, message)

    async def aclose(self) -> None:
        """Wait for the groups being committed."""
        await self._groups.aclose()

    async def _store(
        self, principal: Principal, messages: Sequence[ComposedMessage]
    ) -> list[uuid.UUID | Exception]:
        """One group in one tenant transaction: each message's id, or its refusal (nothing
        of it stored). Raises when the transaction did not commit."""
        async with self._db.tenant_conn(principal.tenant_id) as conn:
            refusals = await accept_each(
                conn, principal, list(messages), now=self._clock.now(), options=self.options
            )
        return [
            message.id if refusal is None else refusal
            for message, refusal in zip(messages, refusals, strict=True)
        ]

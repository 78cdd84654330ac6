"""The MX listener fixture of the inbound tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from postyard.core.db import Database
from postyard.mxd import MxRole
from postyard.runtime import Runtime
from postyard.settings import Settings
from tests.inbound import (
    running_mx,
)


@pytest_asyncio.fixture
async def mx(
    settings: Settings, db: Database, runtime: Runtime, tmp_path: Path
) -> AsyncIterator[MxRole]:
    async with running_mx(settings, db, data_dir=tmp_path, secret=runtime.secret) as role:
        yield role

"""Fixtures shared by the SMTP tests: test certificates and a running submission server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from postyard.core.db import Database
from postyard.settings import Settings
from postyard.smtpd import SmtpRole
from tests.smtp import TlsFiles, make_tls_files, running_relay


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest_asyncio.fixture
async def relay(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles
) -> AsyncIterator[SmtpRole]:
    async with running_relay(settings, db, data_dir=tmp_path, tls=tls) as role:
        yield role

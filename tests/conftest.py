"""Test harness: a real PostgreSQL, a migrated template database cloned per xdist worker, a
real HTTP server on loopback, and factories that go through the services.

PostgreSQL is the embedded server under ``.postyard-test/`` (shared by the workers), or the
server of ``POSTYARD_TEST_DATABASE_URL`` (a superuser URL; use a server dedicated to tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from postyard.app import create_app
from postyard.core.clock import SystemClock
from postyard.core.crypto import derive_kek
from postyard.core.db import Database, TenantId, asyncpg_connect
from postyard.core.embedded import start_embedded
from postyard.core.http import AppServices
from postyard.core.secrets import derive
from postyard.core.serving import ServerWithoutSignals, bind_tcp
from postyard.delivery.mx import make_resolver
from postyard.domains.routes import DomainDeps
from postyard.domains.types import DnsPolicy
from postyard.migrations.runner import migrate, schema_head
from postyard.runtime import Runtime, connect, prepare
from postyard.settings import DbSettings, HttpSettings, Settings
from postyard.tenancy import service
from postyard.tenancy.types import CreatedApiKey, OrganizationView, Scope
from postyard.tracking.types import TrackingConfig
from tests.support.dns_server import DnsServer

REPO = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO / "src" / "postyard" / "migrations"
TEST_SECRET = "test-secret-not-for-production"
APP_ROLE = "postyard_test_app"
SYSTEM_ROLE = "postyard_test_system"
_TEMPLATE_LOCK = 0x74706C  # serialises template builds and clones across workers
_RUN_ID = uuid.uuid4().hex  # without xdist; under xdist every worker gets the run's id


def _migrations_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.read_bytes())
    digest.update((REPO / "src" / "postyard" / "core" / "rls.py").read_bytes())
    return digest.hexdigest()[:12]


def _admin_url() -> str:
    configured = os.environ.get("POSTYARD_TEST_DATABASE_URL")
    if configured:
        return configured
    data = REPO / ".postyard-test"
    return start_embedded(data).url("postgres")


async def pg_connect(url: str) -> asyncpg.Connection:
    return await asyncpg_connect(url)


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _test_settings(database_url: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key=TEST_SECRET,
        log_level="WARNING",
        db=DbSettings(app_role=APP_ROLE, system_role=SYSTEM_ROLE, pool_size=5),
        http=HttpSettings(port=0, max_body_bytes=64 * 1024),
    )


async def clone_database(admin_url: str, target: str, data_dir: Path) -> str:
    """A fresh migrated database named ``target`` (cloned from the template, which is built
    first if this migration fingerprint has none); returns its owner URL."""
    template = f"postyard_tpl_{_migrations_fingerprint()}"
    conn = await pg_connect(admin_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _TEMPLATE_LOCK)
        ready = await conn.fetchval(
            "SELECT datistemplate FROM pg_database WHERE datname = $1", template
        )
        if not ready:
            await conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{template}"')
            settings = _test_settings(_with_database(admin_url, template), data_dir)
            runtime = await prepare(settings)
            await migrate(runtime.urls.owner, runtime.roles)
            await conn.execute(f'ALTER DATABASE "{template}" WITH IS_TEMPLATE true')
        await conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{template}"')
        await conn.execute("SELECT pg_advisory_unlock($1)", _TEMPLATE_LOCK)
    finally:
        await conn.close()
    return _with_database(admin_url, target)


@pytest.fixture(scope="session")
def worker_id_safe(request: pytest.FixtureRequest) -> str:
    """This worker's part of database names: the test run's id and the xdist worker, so two
    runs from one checkout at once never drop each other's databases."""
    workerinput = getattr(request.config, "workerinput", {})
    run = str(workerinput.get("testrunuid", _RUN_ID))[:8]
    return f"{run}_{workerinput.get('workerid', 'main')}"


async def drop_database(admin_url: str, name: str) -> None:
    conn = await pg_connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def runtime(
    worker_id_safe: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runtime]:
    data_dir = tmp_path_factory.mktemp("data")
    admin_url = await asyncio.to_thread(_admin_url)
    name = f"postyard_test_{worker_id_safe}"
    url = await clone_database(admin_url, name, data_dir)
    yield await prepare(_test_settings(url, data_dir))
    await drop_database(admin_url, name)


@dataclass(frozen=True)
class Isolated:
    """A database of its own (and an API server on it) for tests that must see every row of
    a table, such as a worker that claims across tenants."""

    runtime: Runtime
    db: Database
    services: AppServices
    base_url: str


@pytest_asyncio.fixture(scope="module")
async def isolated(
    worker_id_safe: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    app_factory: AppFactory,
) -> AsyncIterator[Isolated]:
    data_dir = tmp_path_factory.mktemp("isolated")
    admin_url = await asyncio.to_thread(_admin_url)
    module = request.module.__name__.rsplit(".", 1)[-1][:30]
    name = f"postyard_{worker_id_safe}_{module}"
    url = await clone_database(admin_url, name, data_dir)
    runtime = await prepare(_test_settings(url, data_dir))
    db = connect(runtime, name="test-isolated")
    services = AppServices(db=db, clock=SystemClock(), schema_head=schema_head())
    app = app_factory(services)
    server, task, base = await start_server(app)
    yield Isolated(runtime=runtime, db=db, services=services, base_url=base)
    await stop_server(server, task)
    await db.dispose()
    await drop_database(admin_url, name)


@pytest.fixture(scope="session")
def settings(runtime: Runtime) -> Settings:
    return runtime.settings


@pytest_asyncio.fixture(scope="session")
async def db(runtime: Runtime) -> AsyncIterator[Database]:
    database = connect(runtime, name="test")
    yield database
    await database.dispose()


@pytest_asyncio.fixture(scope="session")
async def services(db: Database) -> AppServices:
    return AppServices(db=db, clock=SystemClock(), schema_head=schema_head())


@dataclass(frozen=True)
class LiveServer:
    base_url: str


async def start_server(app: ASGIApp) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """Serve an ASGI app on a free loopback port in this event loop."""
    sock = bind_tcp("127.0.0.1", 0)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = ServerWithoutSignals(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = sock.getsockname()[1]
    return server, task, f"http://127.0.0.1:{port}"


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


TEST_POLICY = DnsPolicy(
    return_path_mx_host="mx.postyard.test",
    spf_mechanisms="ip4:192.0.2.10",
    tracking_host="track.postyard.test",
)
TEST_KEK = derive_kek(TEST_SECRET.encode())
TEST_TRACKING = TrackingConfig(
    key=derive(TEST_SECRET.encode(), "tracking-tokens").encode(),
    base_url="https://track.postyard.test",
)
AppFactory = Callable[[AppServices], FastAPI]


@pytest_asyncio.fixture(scope="session")
async def dns_server() -> AsyncIterator[DnsServer]:
    """One DNS server for the session; tests add records under names of their own."""
    async with DnsServer() as server:
        yield server


@pytest.fixture(scope="session")
def app_factory(settings: Settings, dns_server: DnsServer) -> AppFactory:
    """Builds the real app around given services, with DNS answered by ``dns_server``."""

    def build(services: AppServices) -> FastAPI:
        deps = DomainDeps(
            policy=TEST_POLICY,
            resolver=make_resolver([dns_server.nameserver], timeout=2.0, lifetime=4.0, cache=False),
            kek=TEST_KEK,
            default_return_path="send",
        )
        return create_app(
            services,
            max_body_bytes=settings.http.max_body_bytes,
            domain_deps=deps,
            tracking=TEST_TRACKING,
        )

    return build


@pytest_asyncio.fixture(scope="session")
async def live(services: AppServices, app_factory: AppFactory) -> AsyncIterator[LiveServer]:
    app = app_factory(services)
    server, task, base = await start_server(app)
    yield LiveServer(base_url=base)
    await stop_server(server, task)


@pytest_asyncio.fixture(scope="session")
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as client:
        yield client


OrgFactory = Callable[..., Awaitable[OrganizationView]]
KeyFactory = Callable[..., Awaitable[CreatedApiKey]]


@pytest.fixture
def make_org(db: Database) -> OrgFactory:
    async def create(name: str | None = None) -> OrganizationView:
        slug = f"org-{uuid.uuid4().hex[:12]}"
        async with db.system_tx(reason="test factory") as session:
            return await service.create_organization(session, name=name or slug, slug=slug)

    return create


@pytest.fixture
def make_key(db: Database) -> KeyFactory:
    async def create(tenant_id: TenantId, scope: Scope = Scope.FULL) -> CreatedApiKey:
        async with db.tenant_tx(tenant_id) as session:
            return await service.create_api_key(session, tenant_id, name="test", scope=scope)

    return create


@dataclass(frozen=True)
class Tenant:
    org: OrganizationView
    key: CreatedApiKey

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.token}"}


@pytest_asyncio.fixture
async def tenant(make_org: OrgFactory, make_key: KeyFactory) -> Tenant:
    org = await make_org()
    return Tenant(org=org, key=await make_key(org.id))


@pytest_asyncio.fixture
async def other_tenant(make_org: OrgFactory, make_key: KeyFactory) -> Tenant:
    org = await make_org()
    return Tenant(org=org, key=await make_key(org.id))


@pytest_asyncio.fixture
async def owner_conn(runtime: Runtime) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection in a transaction that is rolled back after the test; switch to
    the app or system role inside it with ``SET LOCAL ROLE``."""
    conn = await pg_connect(runtime.urls.owner)
    tx = conn.transaction()
    await tx.start()
    try:
        yield conn
    finally:
        await tx.rollback()
        await conn.close()

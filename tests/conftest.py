"""Shared fixtures: a real PostgreSQL server for the storage suite, and a fresh store per test on each backend.

PostgreSQL: $QUANTSAGE_TEST_PG_URL (an existing server) if set, else a throwaway cluster started from the
installed server binaries (quantsage.testing.PostgresServer). Where neither is possible the PostgreSQL tests
skip with the reason, except when QUANTSAGE_REQUIRE_PG=1 (set by .ci/run in CI), where they fail."""
import itertools, os, uuid
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

@pytest.fixture(scope='session')
def pg_server():
    from quantsage.testing import PostgresServer
    if os.environ.get('QUANTSAGE_TEST_PG_URL'):
        yield _ExistingServer(os.environ['QUANTSAGE_TEST_PG_URL']); return
    why = PostgresServer.unavailable_reason()
    if why:
        if os.environ.get('QUANTSAGE_REQUIRE_PG') == '1': pytest.fail(f"PostgreSQL is required here (QUANTSAGE_REQUIRE_PG=1) but: {why}")
        pytest.skip(f"PostgreSQL tests skipped: {why}")
    srv = PostgresServer()
    srv.start()
    yield srv
    srv.stop()

class _ExistingServer:
    "A server the caller runs; each test gets its own database on it."
    def __init__(self, url): self.url = url
    def create_database(self, name):
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as c: c.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit('/', 1)[0] + '/' + name

_n = itertools.count()

@pytest.fixture
def pg_url(pg_server):
    "URL of a fresh, empty PostgreSQL database."
    return pg_server.create_database(f"qs_test_{os.getpid()}_{next(_n)}_{uuid.uuid4().hex[:6]}")

@pytest.fixture(params=['sqlite', 'postgresql'])
def backend_url(request, tmp_path):
    "A fresh database URL on each backend: every storage test runs against both."
    if request.param == 'sqlite': return f"sqlite:///{tmp_path}/store.sqlite"
    return request.getfixturevalue('pg_url')

@pytest.fixture
def store(backend_url):
    from quantsage.data.store import Store
    st = Store(backend_url)
    yield st
    st.close()

@pytest.fixture(scope='session')
def shared_dir():
    "The shared real market data folder (../shared/data or $QUANTSAGE_SHARED_DATA); its absence is a failure, not a skip."
    from quantsage.testing import shared_data_dir
    d = shared_data_dir()
    if d is None or not (d/'binance_BTCUSDT_1h.csv').exists(): pytest.fail(f"shared data not found at {d}: set QUANTSAGE_SHARED_DATA")
    return d


def pytest_terminal_summary(terminalreporter):
    "What the live order path's seeded soak covered, when it ran in this session (each seed asserts the invariants itself)."
    import sys
    mod = next((m for k, m in list(sys.modules.items()) if k.endswith("live.test_soak")), None)
    soak = getattr(mod, "SOAK", None)
    if not soak: return
    import pandas as pd
    df = pd.DataFrame(soak)
    terminalreporter.write_line(
        f"live soak: {len(df)} seeds passed the invariants: {df.orders.sum()} venue orders, {df.posts.sum()} order POSTs, "
        f"{df.crashes.sum()} crashes and restarts, {df.abandoned.sum()} orders abandoned and {df.rejected.sum()} rejected (labelled), "
        f"{df.s.sum():.0f} s of runs")

"""Fixtures of the risk suite: the engine suite's real-data fixtures (btc_1h, eth_1h, spy_1d from ../shared/data, read in
place) and the venue suite's loopback FakeBinance, reused rather than copied."""
import importlib.util
from pathlib import Path
import pytest

_TESTS = Path(__file__).resolve().parents[1]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_engine = _load('_risk_engine_fixtures', _TESTS/'engine'/'conftest.py')
shared, btc_1h, eth_1h, spy_1d = _engine.shared, _engine.btc_1h, _engine.eth_1h, _engine.spy_1d

try:
    from venues.fake_venue import FakeBinance                  # tests/ is on sys.path (rootdir-relative packages)
except ImportError:                                           # pragma: no cover - run from another root
    from tests.venues.fake_venue import FakeBinance
try:
    from venues.conftest import NOW as VENUE_NOW, real_hourly   # the venue suite's fixture (real hourly bars)
except ImportError:                                           # pragma: no cover
    from tests.venues.conftest import NOW as VENUE_NOW, real_hourly


@pytest.fixture
def binance(real_hourly):
    "The loopback Binance of the venue suite (exchangeInfo: tick 0.01, lot/min quantity 0.00001)."
    with FakeBinance(real_hourly, now=VENUE_NOW) as v: yield v

"Real market data for the engine tests (read in place from ../shared/data, never copied)."
import pytest
from quantsage.data.catalog import load_bars

@pytest.fixture(scope='session')
def shared(shared_dir): return shared_dir

@pytest.fixture(scope='session')
def btc_1h(shared): return load_bars('BTC/USDT', '1h', f"file:{shared}")

@pytest.fixture(scope='session')
def eth_1h(shared): return load_bars('ETH/USDT', '1h', f"file:{shared}")

@pytest.fixture(scope='session')
def spy_1d(shared): return load_bars('SPY', '1d', f"file:{shared}", venue='us-adj')

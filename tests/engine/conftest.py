"Real market data for the engine tests (read in place from ../shared/data, never copied)."
import pytest
from quantsage.testing import shared_data_dir
from quantsage.data.catalog import load_bars

@pytest.fixture(scope='session')
def shared():
    d = shared_data_dir()
    if d is None or not (d/'binance_BTCUSDT_1h.csv').exists(): pytest.fail(f"shared data not found at {d}: set QUANTSAGE_SHARED_DATA")
    return d

@pytest.fixture(scope='session')
def btc_1h(shared): return load_bars('BTC/USDT', '1h', f"file:{shared}")

@pytest.fixture(scope='session')
def eth_1h(shared): return load_bars('ETH/USDT', '1h', f"file:{shared}")

@pytest.fixture(scope='session')
def spy_1d(shared): return load_bars('SPY', '1d', f"file:{shared}", venue='us-adj')

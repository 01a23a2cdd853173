import pandas as pd, pytest
from quantsage.testing import shared_data
from .fake_venue import FakeBinance

NOW = pd.Timestamp('2024-03-01 12:30', tz='UTC')      # the venue's clock: the 12:00-13:00 bar is forming

def open_stamped(name):
    raw = pd.read_csv(shared_data(name), index_col='timestamp')
    raw.index = pd.to_datetime(raw.index, utc=True)
    return raw

@pytest.fixture(scope='session')
def real_hourly():
    return {'BTCUSDT': open_stamped('binance_BTCUSDT_1h.csv'), 'ETHUSDT': open_stamped('binance_ETHUSDT_1h.csv')}

@pytest.fixture
def binance(real_hourly):
    with FakeBinance(real_hourly, now=NOW) as v: yield v

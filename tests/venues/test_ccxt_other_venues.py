"""ccxt venues other than Binance work through the same CCXTSource: Kraken against a loopback fake speaking its API."""
import pandas as pd, pytest
from quantsage.data.ccxt_source import CCXTSource
from quantsage.data.sources import VenueError
from .fake_venue import FakeKraken, FakeCoinbase, Fault
from .conftest import NOW, open_stamped

OHLC = '/0/public/OHLC'

@pytest.fixture(scope='module')
def btc():
    return open_stamped('binance_BTCUSDT_1h.csv')

def test_kraken_pages_stamps_and_retries(btc):
    with FakeKraken({'XXBTZUSD': btc}, now=NOW) as kraken:
        waits = []
        src = CCXTSource('kraken', base_url=kraken.url, clock=lambda: NOW, sleep=waits.append, timeout_ms=2000)
        assert 'BTC/USD' in src.symbols()
        bars = src.fetch('BTC/USD', '1h', start='2024-01-01 01:00')
        expected = btc.loc['2024-01-01 00:00':'2024-03-01 11:00']
        assert len(bars) == len(expected) == 1452
        assert len(kraken.requests(OHLC)) == 3                                            # 720 + 720 + 12
        assert bars.index[-1] == pd.Timestamp('2024-03-01 12:00', tz='UTC')            # the forming 12:00 bar is dropped
        assert bars.to_numpy().tobytes() == expected.to_numpy().tobytes()
        # Kraken reports a rate limit inside an HTTP 200 reply; ccxt maps it to RateLimitExceeded: retried
        kraken.plan(OHLC, Fault.http(200, '{"error":["EAPI:Rate limit exceeded"],"result":{}}'), Fault.http(502))
        assert len(src.fetch('BTC/USD', '1h', start='2024-02-10 01:00', end='2024-02-11 00:00')) == 24
        assert [(r['error'], r['delay']) for r in src.retry_log] == [('DDoSProtection', .5), ('ExchangeNotAvailable', 1.)]
        with pytest.raises(Exception, match='BTC/EUR'):
            src.fetch('BTC/EUR', '1h', start='2024-02-01')

def test_coinbase_pages_stamps_and_retries(btc):
    with FakeCoinbase({'BTC-USD': btc}, now=NOW) as cb:
        waits = []
        src = CCXTSource('coinbase', base_url=cb.url, clock=lambda: NOW, sleep=waits.append, timeout_ms=2000)
        assert 'BTC/USD' in src.symbols()
        bars = src.fetch('BTC/USD', '1h', start='2024-01-01 01:00')
        expected = btc.loc['2024-01-01 00:00':'2024-03-01 11:00']
        assert bars.index[-1] == pd.Timestamp('2024-03-01 12:00', tz='UTC')            # forming bar dropped
        assert len(bars) == 1452 and bars.to_numpy().tobytes() == expected.to_numpy().tobytes()
        candles = [r for r in cb.log if r.path.endswith('/candles')]
        assert len(candles) == 5                                                        # at most 300 a page, as ccxt asks
        cb.plan('/api/v3/brokerage/market/products/BTC-USD/candles', Fault.http(429), Fault.hang(3))
        assert len(src.fetch('BTC/USD', '1h', start='2024-02-10 01:00', end='2024-02-11 00:00')) == 24
        assert [r['error'] for r in src.retry_log] == ['RateLimitExceeded', 'RequestTimeout']
        assert waits == [.5, 1.]

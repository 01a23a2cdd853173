"""The real ccxt client against the loopback fake Binance, with faults injected per request: exact retry counts
and waits, clear errors, and nothing stored when a collection fails."""
import subprocess, sys, time
from pathlib import Path
import pandas as pd, pytest
from quantsage.core import DataError
from quantsage.data.ccxt_source import CCXTSource, RetryPolicy, VenueError
from quantsage.data.ingest import collect
from quantsage.data.store import Store
from .fake_venue import Fault
from .conftest import NOW

KL = '/api/v3/klines'

def source(venue, waits, **kw):
    return CCXTSource('binance', base_url=venue.url, clock=lambda: NOW, sleep=waits.append, **kw)

def test_pages_to_the_end_and_drops_the_forming_bar(binance, real_hourly):
    src = source(binance, [])
    bars = src.fetch('BTC/USDT', '1h', start='2024-01-01 01:00')
    expected = real_hourly['BTCUSDT'].loc['2024-01-01 00:00':'2024-03-01 11:00']
    assert len(bars) == len(expected) == 1452
    assert bars.index[-1] == pd.Timestamp('2024-03-01 12:00', tz='UTC')          # the 12:00 bar (still forming) is not there
    assert bars.to_numpy().tobytes() == expected.to_numpy().tobytes()            # bit-equal through JSON and ccxt
    assert [int(r.query['limit']) for r in binance.requests(KL)] == [1000, 1000]

@pytest.mark.parametrize('fault, error', [
    (Fault.http(429, **{'Retry-After': '3'}), 'DDoSProtection'), (Fault.http(418), 'DDoSProtection'),
    (Fault.http(500), 'ExchangeNotAvailable'), (Fault.http(503), 'OperationFailed'), (Fault.http(504), 'RequestTimeout'),
    (Fault.malformed(), 'BadResponse'), (Fault.hang(1.5), 'RequestTimeout')])
def test_each_transient_fault_is_retried_once_with_the_right_wait(binance, fault, error):
    waits = []
    src = source(binance, waits, timeout_ms=500)
    binance.plan(KL, fault)
    bars = src.fetch('ETH/USDT', '1h', start='2024-02-01 01:00', end='2024-02-02 00:00')
    assert len(bars) == 24
    assert [(r['error'], r['attempt']) for r in src.retry_log] == [(error, 1)]
    assert waits == [3.0 if fault.headers.get('Retry-After') else 0.5]
    assert len(binance.requests(KL)) == 2

def test_backoff_is_capped_exponential_and_gives_up_with_a_clear_error(binance):
    waits = []
    src = source(binance, waits, retry=RetryPolicy(max_retries=4, base=0.5, cap=2.0))
    binance.plan(KL, *[Fault.http(503)]*5)
    with pytest.raises(VenueError, match=r"binance fetch_ohlcv ETH/USDT 1h since \d+: still failing after 4 retries: OperationFailed"):
        src.fetch('ETH/USDT', '1h', start='2024-02-01')
    assert waits == [0.5, 1.0, 2.0, 2.0]
    assert len(binance.requests(KL)) == 5

def test_real_waits_when_not_injected(binance):
    "Without an injected sleep the source really waits (ccxt's rate limiter adds its own small gaps)."
    src = CCXTSource('binance', base_url=binance.url, clock=lambda: NOW, retry=RetryPolicy(base=0.2))
    binance.plan(KL, Fault.http(504), Fault.http(504))
    t = time.perf_counter()
    src.fetch('ETH/USDT', '1h', start='2024-02-01 01:00', end='2024-02-01 05:00')
    assert time.perf_counter() - t >= 0.6                                   # 0.2 + 0.4
    req = binance.requests(KL)
    assert req[1].t - req[0].t >= 0.2 and req[2].t - req[1].t >= 0.4

def test_short_and_empty_pages_do_not_truncate(binance):
    waits = []
    src = source(binance, waits)
    binance.plan(KL, Fault.short(10), Fault.empty())
    bars = src.fetch('BTC/USDT', '1h', start='2024-01-01 01:00')
    assert len(bars) == 1452                                                # short page continued, empty page asked again
    assert [r['error'] for r in src.retry_log] == ['EmptyPage'] and waits == [0.5]

def test_bad_symbol_and_auth_are_not_retried(binance):
    waits = []
    src = source(binance, waits)
    with pytest.raises(DataError, match='bad symbol'):
        src.fetch('XRP/USDT', '1h', start='2024-01-01')
    binance.plan(KL, Fault.http(400, '{"code":-1121,"msg":"Invalid symbol."}'))
    with pytest.raises(DataError, match='bad symbol'):
        src.fetch('BTC/USDT', '1h', start='2024-01-01')
    binance.plan(KL, Fault.http(401, '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'))
    with pytest.raises(VenueError, match='authentication failed'):
        src.fetch('BTC/USDT', '1h', start='2024-01-01')
    assert waits == [] and src.retry_log == []

def test_failed_collection_stores_nothing_for_that_symbol(binance, tmp_path):
    st = Store(f"sqlite:///{tmp_path}/c.sqlite")
    waits = []
    src = source(binance, waits, retry=RetryPolicy(max_retries=2))
    # BTC: page 1 fine, then page 2 fails for good (initial try + 2 retries); ETH: fine
    binance.plan(KL, Fault.short(1000), *[Fault.http(503)]*3)
    res = collect(st, src, ['BTC/USDT', 'ETH/USDT'], '1h', since='2024-01-01 01:00', progress=False)
    assert res.status[0].startswith('failed: binance fetch_ohlcv BTC/USDT') and res.inserted[0] == 0
    assert (res.status[1], res.inserted[1]) == ('ok', 1452)
    assert st.bar_range('BTC/USDT', '1h', 'binance') is None                # nothing partial
    again = collect(st, src, ['BTC/USDT', 'ETH/USDT'], '1h', since='2024-01-01 01:00', progress=False)
    assert again.inserted.tolist() == [1452, 0] and again.status.tolist() == ['ok', 'ok']   # resumes; ETH is up to date
    st.close()

def test_cli_collect_against_the_loopback_venue(binance, tmp_path):
    exe = str(Path(sys.executable).parent/'quantsage')
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    r = subprocess.run([exe, 'collect', '--source', 'ccxt:binance', '--base-url', binance.url, '--symbols', 'BTC/USDT,ETH/USDT',
                        '--timeframe', '1h', '--since', '2024-02-28', '--end', '2024-03-01', '--no-progress', '--db-url', url],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(' ok') == 2
    with Store(url) as st: assert st.datasets().bars.tolist() == [49, 49]
    r = subprocess.run([exe, 'collect', '--source', 'ccxt:binance', '--base-url', binance.url, '--symbols', 'DOGE/USDT',
                        '--timeframe', '1h', '--since', '2024-02-28', '--no-progress', '--db-url', url], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and '1 symbol(s) failed and stored nothing: DOGE/USDT' in r.stderr

def test_venue_that_stops_answering_before_the_end_is_an_error_not_a_short_history(binance):
    waits = []
    src = source(binance, waits)
    binance.plan(KL, Fault.short(1000), Fault.empty(), Fault.empty(), Fault.empty())      # page 2 never comes
    with pytest.raises(VenueError, match=r"the last bar received closes at 2024-02-11 16:00:00\+00:00, and nothing came after it although bars closing up to 2024-03-01 12:30"):
        src.fetch('BTC/USDT', '1h', start='2024-01-01 01:00')
    assert [r['error'] for r in src.retry_log] == ['EmptyPage', 'EmptyPage'] and waits == [.5, 1.]

def test_a_hole_longer_than_a_page_is_stepped_over_and_reported_as_a_gap(real_hourly):
    from .fake_venue import FakeBinance
    btc = real_hourly['BTCUSDT']
    holey = btc.drop(btc.loc['2024-01-10':'2024-02-20'].index)                            # 42 days = 1,008 missing hours > one page
    with FakeBinance({'BTCUSDT': holey}, now=NOW) as v:
        bars = source(v, []).fetch('BTC/USDT', '1h', start='2024-01-01 01:00')
    from quantsage.data.validate import validate
    rep = validate(bars, '1h', symbol='BTC/USDT', now=NOW)
    assert len(bars) == 1452 - 1008 and rep['gap'].rows.missing_bars.tolist() == [1008]

@pytest.mark.parametrize('status', [429, 418])
def test_a_long_retry_after_fails_fast_instead_of_retrying_into_a_ban(binance, status):
    waits = []
    src = source(binance, waits)
    binance.plan(KL, Fault.http(status, **{'Retry-After': '600'}))
    with pytest.raises(VenueError, match=r"asks to wait 600 s \(Retry-After\), longer than the 120 s this policy allows"):
        src.fetch('BTC/USDT', '1h', start='2024-02-01')
    assert waits == [] and len(binance.requests(KL)) == 1

def test_a_fast_local_clock_cannot_close_the_forming_bar(binance):
    ahead = NOW + pd.Timedelta(minutes=35)                                  # local clock says 13:05; the venue says 12:30
    src = CCXTSource('binance', base_url=binance.url, clock=lambda: ahead, sleep=lambda s: None)
    bars = src.fetch('BTC/USDT', '1h', start='2024-03-01 01:00')
    assert bars.index[-1] == pd.Timestamp('2024-03-01 12:00', tz='UTC')        # not the 13:00 close: that bar is still forming
    assert len(binance.requests('/api/v3/time')) == 1

"""The real alpaca-py client against the loopback fake Alpaca, with faults injected per request."""
import os, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from quantsage.config import Secret
from quantsage.core import DataError
from quantsage.data.alpaca_source import AlpacaSource
from quantsage.data.sources import RetryPolicy, VenueError
from quantsage.data.ingest import collect
from quantsage.data.store import Store
from quantsage.testing import shared_data
from .fake_venue import FakeAlpaca, Fault

BARS = '/v2/stocks/bars'
NOW = pd.Timestamp('2024-07-05 15:00', tz='UTC')
KEY, SECRET = 'PKTESTKEY0001', 'test-secret-0001'

def dated(name):
    raw = pd.read_csv(shared_data(name), index_col='timestamp'); raw.index = pd.to_datetime(raw.index, utc=True)
    return raw

@pytest.fixture
def alpaca():
    with FakeAlpaca({'SPY': dated('us_SPY_1d_adj.csv'), 'QQQ': dated('us_QQQ_1d_adj.csv')}) as v: yield v

def source(v, waits, key=KEY, secret=SECRET, **kw):
    return AlpacaSource(Secret('APCA_API_KEY_ID', key), Secret('APCA_API_SECRET_KEY', secret), base_url=v.url,
                        clock=lambda: NOW, sleep=waits.append, **kw)

def test_pages_and_stamps_at_the_session_close(alpaca):
    from quantsage.data.sources import read_bar_file
    bars = source(alpaca, []).fetch('SPY', '1d', start='2019-01-01')
    expected = read_bar_file(shared_data('us_SPY_1d_adj.csv'), '1d', 'session', 'XNYS').loc[:'2024-07-03']
    assert bars.index.equals(expected.index) and bars.to_numpy().tobytes() == expected.to_numpy().tobytes()
    assert len(alpaca.requests(BARS)) == -(-len(bars)//500)                       # 500-bar pages followed to the end
    assert set(alpaca.headers_seen) == {(KEY, SECRET)}

@pytest.mark.parametrize('fault', [Fault.http(429, **{'Retry-After': '3'}), Fault.http(429), Fault.http(500), Fault.http(502),
                                   Fault.http(503), Fault.http(504), Fault.malformed(), Fault.hang(1.5)])
def test_each_transient_fault_is_retried_once_with_the_right_wait(alpaca, fault):
    waits = []
    src = source(alpaca, waits, timeout=0.5)
    alpaca.plan(BARS, fault)
    assert len(src.fetch('QQQ', '1d', start='2024-06-01', end='2024-06-30')) == 19
    assert [r['attempt'] for r in src.retry_log] == [1] and waits == [3.0 if fault.headers else 0.5]
    assert len(alpaca.requests(BARS)) == 2

def test_gives_up_after_the_policy(alpaca):
    waits = []
    src = source(alpaca, waits, retry=RetryPolicy(max_retries=3, base=1.0, cap=3.0))
    alpaca.plan(BARS, *[Fault.http(503)]*4)
    with pytest.raises(VenueError, match='alpaca get_stock_bars SPY 1d: still failing after 3 retries: APIError'):
        source_fetch = src.fetch('SPY', '1d', start='2024-06-01')
    assert waits == [1.0, 2.0, 3.0] and len(alpaca.requests(BARS)) == 4

def test_auth_and_bad_symbol_are_not_retried(alpaca):
    waits = []
    with pytest.raises(VenueError, match='not authorized'):
        source(alpaca, waits, key='PKWRONG000000').fetch('SPY', '1d', start='2024-01-01')
    with pytest.raises(DataError, match='invalid symbol: NOPE'):
        source(alpaca, waits).fetch('NOPE', '1d', start='2024-01-01')
    assert waits == [] and len(alpaca.requests(BARS)) == 2

def test_collect_failure_stores_nothing_then_resumes(alpaca, tmp_path):
    st = Store(f"sqlite:///{tmp_path}/a.sqlite")
    src = source(alpaca, [], retry=RetryPolicy(max_retries=1))
    alpaca.plan(BARS, Fault.http(500), Fault.http(500))
    res = collect(st, src, ['SPY', 'QQQ'], '1d', since='2024-01-01', progress=False)
    assert res.status[0].startswith('failed: alpaca get_stock_bars SPY 1d: still failing after 1 retries')
    assert (res.status[1], res.inserted[1]) == ('ok', 127)
    assert st.bar_range('SPY', '1d', 'alpaca') is None
    assert collect(st, src, ['SPY', 'QQQ'], '1d', since='2024-01-01', progress=False).inserted.tolist() == [127, 0]
    st.close()

def test_cli_collect_alpaca_with_keys_from_the_environment(alpaca, tmp_path):
    exe = str(Path(sys.executable).parent/'quantsage')
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    env = {**os.environ, 'APCA_API_KEY_ID': KEY, 'APCA_API_SECRET_KEY': SECRET}
    r = subprocess.run([exe, 'collect', '--source', 'alpaca', '--base-url', alpaca.url, '--symbols', 'SPY,QQQ', '--timeframe', '1d',
                        '--since', '2025-06-01', '--end', '2025-07-10', '--no-progress', '--db-url', url], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    with Store(url) as st:
        d = st.datasets()
        assert d.symbol.tolist() == ['QQQ', 'SPY'] and d.bars.tolist() == [26, 26] and set(d.asset_type) == {'stock'}

def test_empty_or_short_replies_are_errors_not_short_histories(alpaca):
    src = source(alpaca, [])
    alpaca.plan(BARS, Fault.http(200, '{"bars": {}, "next_page_token": null}'))
    with pytest.raises(VenueError, match=r"bars stop at \(none\) although XNYS had sessions up to 2024-06-28"):
        src.fetch('SPY', '1d', start='2024-06-01', end='2024-06-30')
    alpaca.plan(BARS, Fault.short(5))
    with pytest.raises(VenueError, match=r"bars stop at 2024-06-05 although XNYS had sessions up to 2024-06-28"):
        src.fetch('SPY', '1d', start='2024-06-01', end='2024-06-30')
    assert len(src.fetch('SPY', '1d', start='2024-06-01', end='2024-06-30')) == 19          # and a normal reply is fine

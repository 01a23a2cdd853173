"""Named crash points with real process death: `quantsage trade --venue binance` runs as a subprocess against the loopback
Binance, `QUANTSAGE_CRASH_AT=<point>:<n>` makes it SIGKILL itself there, and the same command restarts it against the same
store and venue. After the restart: the invariants of ../shared/RELIABILITY.md §2.1, recovery finished before any bar
was handled, and the canary keys nowhere in the store or the output."""
import os, signal, subprocess, sys
from pathlib import Path
import pandas as pd, pytest
from quantsage.data.store import Store
from quantsage.execution.live import CRASH_POINTS
from tests.venues.fake_venue import FakeBinanceTrading, Fault
from .conftest import KEY, SECRET, check_invariants

EXE = str(Path(sys.executable).parent/'quantsage')
ROOT = Path(__file__).resolve().parents[2]

# what each point needs to be reached: (fault setup, which time it is reached)
SETUPS = {
    'after_intent_commit': ({}, 2), 'after_http_send': ({}, 2), 'mid_fill_apply': ({'fills': 3}, 2),
    'after_fill_apply': ({}, 3), 'after_status_persist': ({}, 2), 'before_session_save': ({}, 30),
    'after_session_save': ({}, 60), 'during_reconcile': ({}, 1), 'before_cancel_send': ({}, 1),
    'during_resolve': ({'create': ['commit_then_timeout']}, 1), 'before_resend': ({'create': [Fault.http(429, **{'Retry-After': '0.2'})]}, 1),
    'during_breaker_trip': ({'create': [Fault.http(401, '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}')]*3}, 1),
}

def test_every_crash_point_has_a_scenario():
    assert set(SETUPS) == set(CRASH_POINTS)

@pytest.fixture(scope='module')
def hourly():
    from quantsage.testing import shared_data
    raw = pd.read_csv(shared_data('binance_BTCUSDT_1h.csv'), index_col='timestamp')
    raw.index = pd.to_datetime(raw.index, utc=True)
    return raw.loc['2024-01-01':'2024-01-07']

def trade(url, fv, sid, crash=None):
    env = {**os.environ, 'BINANCE_API_KEY': KEY, 'BINANCE_SECRET': SECRET}
    env.pop('QUANTSAGE_CRASH_AT', None)
    if crash: env['QUANTSAGE_CRASH_AT'] = crash
    return subprocess.run([EXE, 'trade', '--venue', 'binance', '--feed', 'replay', '--base-url', fv.url, '--strategy', 'sma_cross', '--symbols', 'BTC/USDT',
                           '--timeframe', '1h', '--param', 'fast=5', '--param', 'slow=20', '--session-id', sid, '--no-progress',
                           '--db-url', url], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)

@pytest.mark.parametrize('point', CRASH_POINTS)
def test_sigkill_at_a_crash_point_then_restart(point, hourly, tmp_path):
    setup, n = SETUPS[point]
    url = f"sqlite:///{tmp_path}/crash.sqlite"
    with Store(url) as st: st.write_bars(hourly.set_axis(hourly.index + pd.Timedelta('1h')), 'BTC/USDT', '1h', venue='binance')
    with FakeBinanceTrading({'BTCUSDT': hourly}, now=pd.Timestamp('2024-03-01', tz='UTC'), key=KEY, secret=SECRET, cash=50_000,
                            client_timeout_s=10.0) as fv:
        fv.faults_trading.create.extend(setup.get('create', [])); fv.faults_trading.fills_per_order = setup.get('fills', 1)
        if point == 'during_reconcile':                                     # killed while a restart reconciles its stored orders
            first = trade(url, fv, 'k1')
            assert first.returncode == 0, first.stderr[-2000:]
        r = trade(url, fv, 'k1', crash=f"{point}:{n}")
        assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stdout[-1500:], r.stderr[-1500:])
        with Store(url) as st: saved = st.load_session_state('k1') is not None
        again = trade(url, fv, 'k1')
        assert again.returncode == 0, (again.stdout[-1500:], again.stderr[-2000:])
        assert ('resuming' if saved else 'new') in again.stdout and 'ReconcileReport(ok' in again.stdout, again.stdout
        with Store(url) as st:
            check_invariants(st, fv, sid='k1')
            dump = '\n'.join(str(v) for t in ('orders', 'trades', 'system_events', 'risk_events', 'session_state', 'risk_state')
                             for v in st.read_table(t).astype(str).to_numpy().ravel())
        for secret in (KEY, SECRET):
            assert secret not in dump and secret not in r.stdout + r.stderr + again.stdout + again.stderr

def test_F04_sigterm_stops_a_live_feed_session_gracefully(hourly, tmp_path):
    "A live-feed session waiting for bars gets SIGTERM: it finishes its cycle, records the stop and exits 0 within seconds."
    import time
    url = f"sqlite:///{tmp_path}/term.sqlite"
    now = pd.Timestamp.now('UTC')
    recent = hourly.set_axis(hourly.index + (now.floor('1h') - pd.Timedelta('1h') - hourly.index[-1]))   # real bars, moved to end now
    with FakeBinanceTrading({'BTCUSDT': recent}, now=now, key=KEY, secret=SECRET, cash=50_000) as fv:
        env = {**os.environ, 'BINANCE_API_KEY': KEY, 'BINANCE_SECRET': SECRET}
        p = subprocess.Popen([EXE, 'trade', '--venue', 'binance', '--base-url', fv.url, '--strategy', 'sma_cross', '--symbols', 'BTC/USDT',
                              '--timeframe', '1h', '--param', 'fast=5', '--param', 'slow=20', '--warmup', '48', '--session-id', 't1',
                              '--no-progress', '--db-url', url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:                                 # wait until the session is running
            with Store(url) as st:
                ev = st.read_table('system_events', run_id='t1')
            if (ev.kind == 'started').any(): break
            time.sleep(0.3)
        assert (ev.kind == 'started').any(), p.stderr.read() if p.poll() is not None else 'not started'
        t = time.monotonic(); p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and time.monotonic() - t < 10, (p.returncode, err[-2000:])
        with Store(url) as st:
            ev = st.read_table('system_events', run_id='t1')
            assert ev.message.str.contains('live session stopped').any(), ev.message.tolist()
        assert 'LiveSession(t1 at ccxt:binance: stopped' in out

def test_F05_a_crash_loop_is_restarted_with_backoff_then_given_up(hourly, tmp_path):
    "A session that dies at every start (here: killed during the reconciliation) is restarted twice, then the supervisor stops."
    import time
    url = f"sqlite:///{tmp_path}/loop.sqlite"
    with Store(url) as st: st.write_bars(hourly.set_axis(hourly.index + pd.Timedelta('1h')), 'BTC/USDT', '1h', venue='binance')
    with FakeBinanceTrading({'BTCUSDT': hourly}, now=pd.Timestamp('2024-03-01', tz='UTC'), key=KEY, secret=SECRET, cash=50_000) as fv:
        env = {**os.environ, 'BINANCE_API_KEY': KEY, 'BINANCE_SECRET': SECRET, 'QUANTSAGE_CRASH_AT': 'during_reconcile:1'}
        t = time.monotonic()
        r = subprocess.run([EXE, 'trade', '--venue', 'binance', '--feed', 'replay', '--base-url', fv.url, '--strategy', 'sma_cross',
                            '--symbols', 'BTC/USDT', '--timeframe', '1h', '--session-id', 'loop1', '--no-progress', '--db-url', url,
                            '--restarts', '2', '--restart-backoff', '0.5'], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert r.returncode == 1 and 'gave up after 2 restart(s)' in r.stderr, r.stderr[-2000:]
        assert time.monotonic() - t >= 1.5                                      # 0.5 s, then 1 s: the waits grew
        assert len(fv.creates()) == 0                                           # no order flood: nothing traded from a dying start
        with Store(url) as st:
            ev = st.read_table('system_events', run_id='loop1')
        sup = ev[ev.source == 'supervisor']
        assert len(sup) == 3 and sup.severity.tolist()[-1] == 'critical'

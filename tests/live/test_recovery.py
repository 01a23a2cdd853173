"""Recovery paths found by review: an adopted holding keeps the cash right across restarts, a session stopped before its
first bar resumes, two symbols' orders never take each other's ids when a bar is handled again, and protective orders
are re-armed after a crash."""
import pandas as pd, pytest
from quantsage.data.store import Store
from quantsage.live import LiveSession
from quantsage.testing import shared_data
from tests.venues.fake_venue import FakeBinanceTrading
from .conftest import KEY, SECRET, venue, run, session, check_invariants

def test_an_adopted_holding_keeps_cash_equal_to_the_venue_after_restarts(fv, store, hourly):
    fv.balances['BTC'] = 0.25
    s = session(fv, store, hourly, on_mismatch='adopt', max_bars=20); s.run_sync()
    again = session(fv, store, hourly, max_bars=20); again.recover()
    assert abs(again.a.kernel.portfolio.cash - fv.balances['USDT']) < 1e-6
    assert abs(again.a.kernel.portfolio.quantity('BTC/USDT') - fv.position('BTC')) < 1e-9

def test_a_session_stopped_before_its_first_bar_resumes(fv, store, hourly):
    s = session(fv, store, hourly, max_bars=0); s.run_sync()
    assert store.load_session_state('s1')['last_bar'] is None
    again = session(fv, store, hourly)
    assert again.resumed
    again.run_sync()
    check_invariants(store, fv)

@pytest.fixture
def two(hourly):
    raw = pd.read_csv(shared_data('binance_ETHUSDT_1h.csv'), index_col='timestamp'); raw.index = pd.to_datetime(raw.index, utc=True)
    return {'BTC/USDT': hourly, 'ETH/USDT': raw.loc[hourly.index[0]:hourly.index[-1]]}

def run2(fv, store, bars, crash=None, n=1):
    from quantsage.execution.live import crash_at, SimulatedCrash
    data = {s: f.set_axis(f.index + pd.Timedelta('1h')) for s, f in bars.items()}
    with crash_at(crash, n):
        try:
            LiveSession('sma_cross', data, venue=venue(fv), store=store, session_id='m1', fast=5, slow=20, fraction=0.3,
                        absence_wait_s=0.5).run_sync(); return False
        except SimulatedCrash: return True

def test_two_symbols_orders_keep_their_own_ids_when_a_bar_is_handled_again(two, tmp_path):
    fv_args = dict(now=pd.Timestamp('2024-03-01', tz='UTC'), key=KEY, secret=SECRET, cash=100_000)
    ids = lambda b: {k: v for k, v in b.items()}
    with FakeBinanceTrading({'BTCUSDT': two['BTC/USDT'], 'ETHUSDT': two['ETH/USDT']}, **fv_args) as clean, \
         Store(f"sqlite:///{tmp_path}/a.sqlite") as st:
        assert not run2(clean, st, two)
        want = sorted((o.symbol, o.side) for o in clean.orders)
    with FakeBinanceTrading({'BTCUSDT': two['BTC/USDT'], 'ETHUSDT': two['ETH/USDT']}, **fv_args) as fv, \
         Store(f"sqlite:///{tmp_path}/b.sqlite") as st:
        crashed = [run2(fv, st, two, crash='after_fill_apply', n=k) for k in (1, 2)]
        assert any(crashed)
        assert not run2(fv, st, two)
        got = sorted((o.symbol, o.side) for o in fv.orders)
        per_cid = {}
        for o in fv.orders: per_cid[o.client_order_id] = per_cid.get(o.client_order_id, 0) + 1
        assert max(per_cid.values()) == 1
        assert [x for x in got if x[0] == 'ETHUSDT'] == [x for x in want if x[0] == 'ETHUSDT']   # ETH lost nothing to BTC's crash
        orders = st.read_table('orders', run_id='m1')
        assert not set(orders.status) & {'intent', 'unknown'}

def test_protective_orders_are_rearmed_after_a_crash_after_the_fill(fv, store, hourly):
    assert run(fv, store, hourly, crash='after_fill_apply', n=1)             # the entry's fills stored; its stop never placed
    s = session(fv, store, hourly, max_bars=1); s.run_sync()
    held = store.read_table('orders', run_id='s1')
    held = held[(held.status == 'held') & held.reduce_only]
    assert fv.position('BTC') > 0 and set(held.order_type) == {'stop', 'limit'}              # stop-loss and take-profit again

def test_cash_moved_outside_the_session_fails_closed_or_is_adopted_for_good(fv, store, hourly):
    s = session(fv, store, hourly, max_bars=30); s.run_sync()
    fv.balances['USDT'] += 1_000.0                                               # a deposit the session did not make
    with pytest.raises(Exception, match=r'cash: portfolio .*: MISMATCH'):
        session(fv, store, hourly, max_bars=30).run_sync()
    session(fv, store, hourly, max_bars=30, on_mismatch='adopt').run_sync()
    again = session(fv, store, hourly); again.recover()                         # later starts agree without adopting again
    assert again.report.ok and abs(again.a.kernel.portfolio.cash - fv.balances['USDT']) < 0.01

"""The dashboard's reads on both backends: the sampled equity, sessions beside backtests, and what an empty store shows."""
import numpy as np, pandas as pd
import pytest
from quantsage.testing import synth_bars
from quantsage.engine.backtest import backtest
from quantsage.events import FillEvent, PerformanceMetricEvent, Side
from quantsage.apps.dashboard import DashboardData

@pytest.fixture
def filled(store):
    res = backtest('sma_cross', synth_bars(3_000, seed=2, freq='1h'), symbols='SYN', asset_type='crypto', progress=False, check_data=False)
    res.save(store)
    now = pd.Timestamp.now(tz='UTC')
    evs = [PerformanceMetricEvent({'equity': 100_000. + k, 'price:SYN': 10. + k}, now + pd.Timedelta(seconds=k), now, scope='paper', run_id='paper-1')
           for k in range(3)]
    evs.append(FillEvent('o-1', 'f-1', 'SYN', Side.BUY, 1., 10., 0.01, int(now.value), int(now.value)))
    store.write_events(evs, run_id='paper-1')
    return res

def test_equity_is_sampled_at_stored_points_and_ends_at_the_final_one(store, filled):
    data = DashboardData(store)
    eq = data.equity(filled.run_id, points=100)
    assert 50 <= len(eq) <= 100 and eq.time.is_monotonic_increasing
    assert eq.equity.tolist() == filled.equity.loc[eq.time].tolist()             # real stored points
    assert eq.equity.iloc[-1] == filled.equity.iloc[-1]
    assert data.equity(filled.run_id, points=10_000).equity.tolist() == filled.equity.tolist()

def test_sessions_are_listed_beside_backtests_newest_first(store, filled):
    data = DashboardData(store)
    runs = data.runs()
    assert runs.run_id.tolist() == ['paper-1', filled.run_id] and runs.kind.tolist() == ['session', 'backtest']
    assert data.fills('paper-1').client_order_id.tolist() == ['o-1']
    m = data.metrics('paper-1')                                                   # seconds old: not annualised
    assert m['final_equity'] == 100_002. and set(m) == {'total_return', 'max_drawdown', 'final_equity'}
    assert data.overview('paper-1')['equity'] == 100_002.
    assert data.prices(['SYN'], 'paper-1').close.tolist() == [12.]                  # the session's own last close
    assert data.prices(['SYN']).empty                                             # no stored bars of it

def test_an_empty_store_reads_as_empty(store):
    data = DashboardData(store)
    assert data.runs().empty and data.equity('nope').empty and data.overview('nope') == {}
    assert data.risk_state().empty and data.risk_events().empty and data.prices(['BTC/USDT']).empty

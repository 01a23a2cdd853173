"""`batch` (a whole column at once, what a backtest uses for declared indicators) equals `update` value by value, bit
for bit, and leaves the same state, from any state and for any split of the column (property-tested); a backtest that
precomputes a strategy's declared indicators decides exactly as one that updates them bar by bar, on real data."""
import json, math
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from quantsage import indicators as qi
from quantsage.indicators import SMA, Crossover, Streaming
from quantsage.core import DataError

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
prices = st.floats(min_value=1e-3, max_value=1e7, allow_nan=False, allow_infinity=False)

def _same(a, b):
    "Bit-equal float arrays (NaN where NaN): the raw 64-bit patterns, -0.0 included."
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))

def _loop(ind, xs): return [ind.update(x) for x in xs]

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), before=st.lists(finite, max_size=90), xs=st.lists(finite, max_size=300),
       cuts=st.lists(st.integers(0, 300), max_size=4))
def test_sma_batch_is_the_loop_bit_for_bit_from_any_state(n, before, xs, cuts):
    one, many = SMA(n), SMA(n)
    for x in before: one.update(x); many.update(x)                 # any starting state: filling, full, mid-ring
    want = _loop(one, xs)
    got, a = [], 0
    for b in sorted(set(c for c in cuts if c <= len(xs))) + [len(xs)]:
        got.extend(many.batch(np.array(xs[a:b], dtype=np.float64)).tolist()); a = b
    assert _same(got, want)
    assert json.dumps(many.get_state()) == json.dumps(one.get_state())
    assert (many.k, many.full, many.total.hex(), [v.hex() for v in many.ring]) == (one.k, one.full, one.total.hex(), [v.hex() for v in one.ring])

@settings(max_examples=150, deadline=None)
@given(f=st.integers(1, 15), extra=st.integers(1, 30), xs=st.lists(st.sampled_from([100.0, 100.5, 101.0, 99.5]) | prices, max_size=400))
def test_crossover_batch_is_the_loop_including_ties(f, extra, xs):
    # few distinct values: flat stretches where the two averages are exactly equal (a tie is not a cross)
    one, many = Crossover(SMA(f), SMA(f + extra)), Crossover(SMA(f), SMA(f + extra))
    assert _same(many.batch(np.array(xs, dtype=np.float64)), _loop(one, xs))
    assert json.dumps(many.get_state()) == json.dumps(one.get_state())

def _every_indicator():
    return [qi.SMA(7), qi.EMA(9), qi.RollingStd(10), qi.BBands(20, 2), qi.ZScore(20), qi.LogReturn(), qi.RollingVolatility(20),
            qi.RSI(14), qi.MACD(), qi.ATR(14), qi.ADX(14), qi.OBV(), qi.VolumeRatio(20), Crossover(qi.EMA(5), qi.SMA(20))]

def test_every_indicator_batch_equals_its_updates_on_real_bars(shared_dir):
    from quantsage.data.sources import read_bar_file
    bars = read_bar_file(shared_dir/'binance_BTCUSDT_1h.csv', '1h').iloc[:3000]
    for one, many in zip(_every_indicator(), _every_indicator()):
        cols = [bars[f].to_numpy() for f in one.inputs]
        want = list(map(one.update, *(c.tolist() for c in cols)))
        got = many.batch(*cols)
        if isinstance(got, np.ndarray): assert _same(got, want), type(one).__name__
        else: assert got == want or np.array_equal(np.array(got), np.array(want), equal_nan=True), type(one).__name__
        assert json.dumps(many.get_state()) == json.dumps(one.get_state()), type(one).__name__

def test_batch_refuses_bad_input_whole():
    s = SMA(5); s.batch(np.arange(1., 4.))
    before = json.dumps(s.get_state())
    with pytest.raises(DataError, match='SMA: expected a finite number, got inf'): s.batch(np.array([1., 2., np.inf, 3.]))
    assert json.dumps(s.get_state()) == before                      # nothing taken in
    with pytest.raises(ValueError, match=r"ATR.batch takes 3 column\(s\) \(high, low, close\), got 1"): qi.ATR(14).batch(np.ones(5))
    with pytest.raises(ValueError, match='Crossover: EMA reads'): Crossover(qi.EMA(5), qi.ATR(5))

@pytest.mark.parametrize('loop', ['step', 'incremental'])
def test_precomputed_backtest_decides_as_bar_by_bar_on_real_minute_bars(shared_dir, loop):
    """sma_cross on 20,000 real 1-minute bars of two symbols (flat stretches included: exact ties are common there):
    the replay precomputes the declared crossover, `step` and `incremental` update it bar by bar."""
    from quantsage.data.sources import read_bar_file
    from quantsage.engine.backtest import backtest
    data = {s: read_bar_file(shared_dir/f'binance_{s.replace("/", "")}_1m.csv', '1m').iloc[:20_000] for s in ('BTC/USDT', 'ETH/USDT')}
    fast = backtest('sma_cross', data, fraction=0.4, fast=5, slow=12, run_id='same')
    slow = backtest('sma_cross', data, fraction=0.4, fast=5, slow=12, run_id='same', loop=loop)
    assert fast.metrics['n_trades'] > 500
    assert slow.fingerprint == fast.fingerprint
    pd.testing.assert_frame_equal(slow.signals, fast.signals)

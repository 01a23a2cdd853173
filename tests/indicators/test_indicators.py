"""Indicators on real data: the vectorized forms agree with TA-Lib (1e-6 relative after warm-up, default and
non-default parameters), the streaming forms agree with the vectorized ones (1e-9) on every shared file, and no
value ever depends on a later bar."""
import math
import numpy as np, pandas as pd, pytest
import talib
from quantsage import indicators as qi
from quantsage.data.sources import read_bar_file, parse_shared_name
from quantsage.testing import shared_data_dir
from quantsage.core import DataError

FILES = sorted(p.name for p in shared_data_dir().glob('*.csv'))

def load(name):
    d = parse_shared_name(shared_data_dir()/name)
    return read_bar_file(d.path, d.timeframe, d.stamp, d.calendar)

@pytest.fixture(scope='module')
def btc():
    return load('binance_BTCUSDT_1h.csv')

def close_enough(ours, ref, rtol, first=0, scale=None):
    "rtol relative to each value, with an absolute floor at rtol x the series' typical size (for values crossing 0)."
    ours, ref = np.asarray(ours, float)[first:], np.asarray(ref, float)[first:]
    assert np.array_equal(np.isnan(ours), np.isnan(ref)), f"NaN positions differ, first at {np.argmax(np.isnan(ours) != np.isnan(ref)) + first}"
    ok = ~np.isnan(ref)
    if scale is None: scale = np.nanmedian(np.abs(ref[ok])) if ok.any() else 1.
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=rtol, atol=rtol*scale)

def talib_cases(b):
    h, l, c, v = (b[k].to_numpy() for k in ('high', 'low', 'close', 'volume'))
    cases = []
    for n in (20, 7):
        cases.append((f'sma {n}', qi.sma(b.close, n), talib.SMA(c, n)))
    for n in (20, 50):
        cases.append((f'ema {n}', qi.ema(b.close, n), talib.EMA(c, n)))
    for n in (14, 9):
        cases.append((f'rsi {n}', qi.rsi(b.close, n), talib.RSI(c, n)))
    for f, s, g in ((12, 26, 9), (5, 35, 5)):
        m = qi.macd(b.close, f, s, g); tm = talib.MACD(c, f, s, g)
        cases += [(f'macd {f},{s},{g} {k}', m[k], t) for k, t in zip(('macd', 'signal', 'hist'), tm)]
    for n, k in ((20, 2.), (30, 1.5)):
        bb = qi.bbands(b.close, n, k); tb = talib.BBANDS(c, n, k, k, 0)
        cases += [(f'bbands {n},{k} {col}', bb[col], t) for col, t in zip(('upper', 'middle', 'lower'), tb)]
        cases.append((f'zscore {n}', qi.zscore(b.close, n), (c - talib.SMA(c, n))/talib.STDDEV(c, n, 1)))
    for n in (14, 21):
        cases.append((f'atr {n}', qi.atr(b.high, b.low, b.close, n), talib.ATR(h, l, c, n)))
    for n in (14, 10):
        a = qi.adx(b.high, b.low, b.close, n)
        cases += [(f'+di {n}', a.plus_di, talib.PLUS_DI(h, l, c, n)), (f'-di {n}', a.minus_di, talib.MINUS_DI(h, l, c, n)),
                  (f'adx {n}', a.adx, talib.ADX(h, l, c, n))]
    cases.append(('obv', qi.obv(b.close, b.volume), talib.OBV(c, v)))
    cases.append(('volume ma 20', qi.volume_ratio(b.volume, 20).volume_ma, talib.SMA(v, 20)))
    cases.append(('log return', qi.log_returns(b.close), np.log(talib.ROCR(c, 1))))
    for n in (20, 60):
        r = np.log(talib.ROCR(c, 1))
        cases.append((f'volatility {n}', qi.rolling_volatility(b.close, n), talib.STDDEV(r, n, 1)*math.sqrt(n/(n - 1))))
    return cases

@pytest.mark.parametrize('name', ['binance_BTCUSDT_1h.csv', 'us_AAPL_1d_raw.csv'])
def test_vectorized_agrees_with_talib(name):
    b = load(name)
    for label, ours, ref in talib_cases(b):
        try: close_enough(ours, ref, 1e-6)
        except AssertionError as e: raise AssertionError(f"{name} {label}: {e}") from None

STREAMS = [('sma', lambda: qi.SMA(20), lambda b: qi.sma(b.close, 20), 'c'),
           ('ema', lambda: qi.EMA(20), lambda b: qi.ema(b.close, 20), 'c'),
           ('rsi', lambda: qi.RSI(14), lambda b: qi.rsi(b.close, 14), 'c'),
           ('macd', lambda: qi.MACD(), lambda b: qi.macd(b.close), 'c'),
           ('bbands', lambda: qi.BBands(20, 2), lambda b: qi.bbands(b.close, 20, 2), 'c'),
           ('zscore', lambda: qi.ZScore(20), lambda b: qi.zscore(b.close, 20), 'c'),
           ('atr', lambda: qi.ATR(14), lambda b: qi.atr(b.high, b.low, b.close, 14), 'hlc'),
           ('adx', lambda: qi.ADX(14), lambda b: qi.adx(b.high, b.low, b.close, 14), 'hlc'),
           ('obv', lambda: qi.OBV(), lambda b: qi.obv(b.close, b.volume), 'cv'),
           ('volume', lambda: qi.VolumeRatio(20), lambda b: qi.volume_ratio(b.volume, 20), 'v'),
           ('log return', lambda: qi.LogReturn(), lambda b: qi.log_returns(b.close), 'c'),
           ('volatility', lambda: qi.RollingVolatility(20), lambda b: qi.rolling_volatility(b.close, 20), 'c')]

def stream(make, b, args):
    ind = make()
    cols = {'c': (b.close,), 'hlc': (b.high, b.low, b.close), 'cv': (b.close, b.volume), 'v': (b.volume,)}[args]
    out = [ind.update(*row) for row in zip(*(s.to_numpy().tolist() for s in cols))]
    return np.array(out, dtype=float).reshape(len(b), -1)

@pytest.mark.parametrize('name', FILES)
def test_streaming_agrees_with_vectorized_on_every_shared_file(name):
    b = load(name)
    for label, make, vec, args in STREAMS:
        want = np.asarray(vec(b), dtype=float).reshape(len(b), -1)
        got = stream(make, b, args)
        if label == 'bbands': got = got[:, [0, 1, 2]]                  # (lower, middle, upper) both ways
        try: close_enough(got, want, 1e-9)
        except AssertionError as e: raise AssertionError(f"{name} {label}: {e}") from None

def test_no_lookahead_any_change_after_t_changes_nothing_up_to_t(btc):
    b = btc.iloc[:3000]
    rng = np.random.default_rng(7)
    vec = [lambda b: qi.sma(b.close, 20), lambda b: qi.ema(b.close, 20), lambda b: qi.rsi(b.close), lambda b: qi.macd(b.close),
           lambda b: qi.bbands(b.close), lambda b: qi.zscore(b.close), lambda b: qi.atr(b.high, b.low, b.close),
           lambda b: qi.adx(b.high, b.low, b.close), lambda b: qi.obv(b.close, b.volume), lambda b: qi.volume_ratio(b.volume),
           lambda b: qi.log_returns(b.close), lambda b: qi.rolling_volatility(b.close)]
    for t in rng.integers(1, 2999, 6):
        changed = b.copy()
        f = rng.uniform(0.5, 2.0, len(b) - t - 1)
        changed.iloc[t+1:, :4] = changed.iloc[t+1:, :4].to_numpy()*f[:, None]         # every price after t moves (OHLC stays consistent)
        changed.iloc[t+1:, 4] = changed.iloc[t+1:, 4].to_numpy()*rng.uniform(0, 3, len(b) - t - 1)
        for i, fn in enumerate(vec):
            a = np.asarray(fn(b), float).reshape(len(b), -1)[:t+1]; z = np.asarray(fn(changed), float).reshape(len(b), -1)[:t+1]
            assert np.array_equal(a, z, equal_nan=True), f"indicator {i} changed before t={t}"
        for label, make, _, args in STREAMS:
            a, z = stream(make, b, args)[:t+1], stream(make, changed, args)[:t+1]       # both streams see the whole series
            assert np.array_equal(a, z, equal_nan=True), f"streaming {label} changed before t={t}"

def test_bad_input_is_refused_in_both_forms(btc):
    b = btc.iloc[:60].copy()
    neg = b.copy(); neg.iloc[30, :4] = -1.
    for fn in (lambda x: qi.rsi(x.close), lambda x: qi.macd(x.close), lambda x: qi.bbands(x.close), lambda x: qi.zscore(x.close),
               lambda x: qi.atr(x.high, x.low, x.close), lambda x: qi.adx(x.high, x.low, x.close), lambda x: qi.obv(x.close, x.volume)):
        with pytest.raises(DataError, match='non-positive value -1.0'): fn(neg)
    with pytest.raises(DataError, match='negative value'): qi.volume_ratio(b.volume*-1)
    for label, make, _, args in STREAMS:
        bad = b.copy(); bad.iloc[30, :] = np.nan
        with pytest.raises(DataError, match='expected'): stream(make, bad, args)
        if args != 'v' and label not in ('sma', 'ema'):                  # SMA/EMA average any finite series (volumes too)
            with pytest.raises(DataError, match='expected'): stream(make, neg, args)
    assert qi.log_returns(b.close.iloc[:0]).empty and qi.rolling_volatility(b.close.iloc[:0]).empty

def test_flat_prices_and_zero_volume_agree_in_both_forms():
    "Tick-like prices (repeated values, flat stretches) and runs of zero volume: same NaNs, same numbers."
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = 300
        steps = rng.choice([-1, 0, 0, 0, 1], n)*0.01
        close = 60000 + np.cumsum(steps)
        close[100:160] = close[99]                                          # a flat hour
        vol = rng.uniform(0, 2, n); vol[rng.random(n) < .4] = 0.; vol[200:240] = 0.
        idx = pd.date_range('2024-01-01', periods=n, freq='1min', tz='UTC')
        b = pd.DataFrame({'open': close, 'high': close + .01, 'low': close - .01, 'close': close, 'volume': vol}, index=idx)
        for label, make, vec, args in STREAMS:
            want = np.asarray(vec(b), dtype=float).reshape(n, -1)
            # MACD is a difference of two price-level EMAs: on near-flat prices its digits are those of the prices
            close_enough(stream(make, b, args), want, 1e-9, scale=60000. if label == 'macd' else None)

def test_bad_input_is_refused_or_documented_nan(btc):
    c = btc.close.iloc[:100].copy()
    c.iloc[40] = np.nan
    for fn in (qi.sma, qi.ema, qi.rsi, qi.zscore):
        with pytest.raises(DataError, match=r'NaN or infinite value at 2018-01-02 17:00:00\+00:00'): fn(c)
    with pytest.raises(DataError, match='non-positive value'): qi.log_returns(btc.close.iloc[:10].where(lambda s: s.index != s.index[5], -1.))
    assert qi.adx(btc.high[:20], btc.low[:20], btc.close[:20]).adx.isna().all()        # shorter than 2n-1: all NaN
    with pytest.raises(ValueError, match='need fast < slow'): qi.macd(btc.close, 26, 12)
    with pytest.raises(ValueError, match='n must be an integer >= 2'): qi.bbands(btc.close, 1)

@pytest.mark.parametrize('label, make, vec, args', STREAMS, ids=[s[0] for s in STREAMS])
def test_streaming_state_survives_a_restart(btc, label, make, vec, args):
    "Save the state half-way (through JSON, as a live session would), restore into a fresh object: identical output."
    import json
    b = btc.iloc[:500]
    first = make()
    cols = {'c': (b.close,), 'hlc': (b.high, b.low, b.close), 'cv': (b.close, b.volume), 'v': (b.volume,)}[args]
    rows = list(zip(*(s.to_numpy().tolist() for s in cols)))
    for r in rows[:250]: first.update(*r)
    assert first.ready
    second = make(); second.set_state(json.loads(json.dumps(first.get_state())))
    a = np.array([first.update(*r) for r in rows[250:]], dtype=float); z = np.array([second.update(*r) for r in rows[250:]], dtype=float)
    assert np.array_equal(a, z, equal_nan=True)

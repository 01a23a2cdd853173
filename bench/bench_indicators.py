"""Cost of the indicators (issue 4): one streaming update per indicator (µs per bar) and vectorized throughput,
on each real 1-minute file (BTC/USDT and ETH/USDT, 130,708 bars each), plus the worst case of the rolling
statistics (an exactly flat window), and `batch` (whole columns, what a backtest uses for a strategy's declared
indicators). TA-Lib (C) runs in the same script as the peer of the vectorized forms. Targets: each streaming update < 2 µs; all of them together < 15 µs per bar.
Run: .venv/bin/python bench/bench_indicators.py
"""
import sys, time
import numpy as np
from quantsage import indicators as qi
from quantsage.data.sources import read_bar_file
from quantsage.testing import shared_data

def use(name):
    global b, N, H, L, C, V
    b = read_bar_file(shared_data(name), '1m'); N = len(b)
    H, L, C, V = (b[k].to_numpy().tolist() for k in ('high', 'low', 'close', 'volume'))

def per_bar(make, kind, reps=3):
    best = float('inf')
    for _ in range(reps):
        ind = make(); u = ind.update
        t = time.perf_counter()
        if kind == 'c':
            for c in C: u(c)
        elif kind == 'hlc':
            for h, l, c in zip(H, L, C): u(h, l, c)
        elif kind == 'cv':
            for c, v in zip(C, V): u(c, v)
        else:
            for v in V: u(v)
        best = min(best, time.perf_counter() - t)
    return best/N*1e6

def loop_floor(reps=3):
    "The cost of the loop alone (iterating the bars, calling a no-op)."
    f = lambda c: c; best = float('inf')
    for _ in range(reps):
        t = time.perf_counter()
        for c in C: f(c)
        best = min(best, time.perf_counter() - t)
    return best/N*1e6

STREAM = [('SMA(20)', lambda: qi.SMA(20), 'c'), ('EMA(20)', lambda: qi.EMA(20), 'c'), ('RSI(14)', lambda: qi.RSI(14), 'c'),
          ('MACD(12,26,9)', lambda: qi.MACD(), 'c'), ('BBands(20,2)', lambda: qi.BBands(20, 2), 'c'), ('ZScore(20)', lambda: qi.ZScore(20), 'c'),
          ('ATR(14)', lambda: qi.ATR(14), 'hlc'), ('ADX(14)', lambda: qi.ADX(14), 'hlc'), ('OBV', lambda: qi.OBV(), 'cv'),
          ('VolumeRatio(20)', lambda: qi.VolumeRatio(20), 'v'), ('LogReturn', lambda: qi.LogReturn(), 'c'),
          ('RollingVolatility(20)', lambda: qi.RollingVolatility(20), 'c')]

def all_together(reps=3):
    best = float('inf')
    for _ in range(reps):
        inds = [m() for _, m, _ in STREAM]
        cu = [i.update for (_, _, k), i in zip(STREAM, inds) if k == 'c']
        hu = [i.update for (_, _, k), i in zip(STREAM, inds) if k == 'hlc']
        cvu = [i.update for (_, _, k), i in zip(STREAM, inds) if k == 'cv']
        vu = [i.update for (_, _, k), i in zip(STREAM, inds) if k == 'v']
        t = time.perf_counter()
        for h, l, c, v in zip(H, L, C, V):
            for u in cu: u(c)
            for u in hu: u(h, l, c)
            for u in cvu: u(c, v)
            for u in vu: u(v)
        best = min(best, time.perf_counter() - t)
    return best/N*1e6

def vec_rate(f, reps=3):
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); f(); best = min(best, time.perf_counter() - t)
    return N/best

def report(name):
    import talib
    use(name)
    c, h, l, v = (b[k].to_numpy() for k in ('close', 'high', 'low', 'volume'))
    print(f"indicator benchmark: {N:,} real bars of {name}, Python {sys.version.split()[0]}, best of 3")
    print(f"  loop floor (iterate bars, call a no-op): {loop_floor():.2f} µs/bar")
    print(f"  {'streaming update':<24}{'µs/bar':>8}   {'vectorized':<14}{'bars/s':>14}{'TA-Lib bars/s':>16}")
    VEC = {'SMA(20)': (lambda: qi.sma(b.close, 20), lambda: talib.SMA(c, 20)), 'EMA(20)': (lambda: qi.ema(b.close, 20), lambda: talib.EMA(c, 20)),
           'RSI(14)': (lambda: qi.rsi(b.close), lambda: talib.RSI(c, 14)), 'MACD(12,26,9)': (lambda: qi.macd(b.close), lambda: talib.MACD(c)),
           'BBands(20,2)': (lambda: qi.bbands(b.close), lambda: talib.BBANDS(c, 20, 2, 2)), 'ZScore(20)': (lambda: qi.zscore(b.close), None),
           'ATR(14)': (lambda: qi.atr(b.high, b.low, b.close), lambda: talib.ATR(h, l, c, 14)),
           'ADX(14)': (lambda: qi.adx(b.high, b.low, b.close), lambda: (talib.PLUS_DI(h, l, c), talib.MINUS_DI(h, l, c), talib.ADX(h, l, c))),
           'OBV': (lambda: qi.obv(b.close, b.volume), lambda: talib.OBV(c, v)), 'VolumeRatio(20)': (lambda: qi.volume_ratio(b.volume), None),
           'LogReturn': (lambda: qi.log_returns(b.close), None), 'RollingVolatility(20)': (lambda: qi.rolling_volatility(b.close), None)}
    worst = 0.
    for name, make, kind in STREAM:
        us = per_bar(make, kind); worst = max(worst, us)
        ours, peer = VEC[name]
        print(f"  {name:<24}{us:>8.2f}   {'':<14}{vec_rate(ours):>14,.0f}{(f'{vec_rate(peer):,.0f}' if peer else '-'):>16}")
    tog = all_together()
    print(f"  all {len(STREAM)} together: {tog:.2f} µs/bar")
    same = np.array_equal(qi.SMA(20).batch(c), np.array(list(map(qi.SMA(20).update, c.tolist()))), equal_nan=True)
    print(f"  batch (what a backtest uses for declared indicators; equal bit for bit to the updates: {same}): "
          f"SMA(20) {vec_rate(lambda: qi.SMA(20).batch(c)):,.0f} bars/s and Crossover(SMA(10), SMA(30)) "
          f"{vec_rate(lambda: qi.Crossover(qi.SMA(10), qi.SMA(30)).batch(c)):,.0f} bars/s vectorized; "
          f"RSI(14) {1e6/vec_rate(lambda: qi.RSI(14).batch(c)):.2f} µs/bar (its updates in a loop)")
    print(f"  targets: each streaming update < 2 µs: {'MET' if worst < 2 else 'NOT MET'} (slowest {worst:.2f}); "
          f"all together < 15 µs: {'MET' if tog < 15 else 'NOT MET'}")

if __name__ == '__main__':
    for name in ('binance_BTCUSDT_1m.csv', 'binance_ETHUSDT_1m.csv'): report(name); print()
    global C
    C = [60000.0]*N                                                    # worst case for rolling statistics: an exactly flat series
    flat = {n: per_bar(m, 'c') for n, m, k in STREAM if n in ('BBands(20,2)', 'ZScore(20)', 'RollingVolatility(20)')}
    print("  exactly flat series (worst case of the rolling statistics): " + ', '.join(f"{k} {v:.2f} µs" for k, v in flat.items()))

"""QuantSage's event-driven backtester against backtrader and backtesting.py, in one run, on the same real bars.

Workloads (SMA crossover 10/30, next-open fills, no costs, one unit per trade, cash 10M):
  * 1,000,000 one-minute bars: the real Binance BTC/USDT 1-minute file (130,708 bars) laid end to end 8 times, each
    copy rescaled to start where the previous one ended (so the series is continuous; every bar is a real bar shape);
  * the same at 10k and 100k bars for QuantSage (time per bar must stay flat);
  * the Bollinger/z-score/RSI mean-reversion rule on the same 1M bars (QuantSage and backtesting.py);
  * a multi-symbol run: the 9 adjusted US ETF/stock daily files plus BTC/USDT and ETH/USDT hourly, in one portfolio;
  * drawing a 1,000,000-point equity curve (HoloViews + Bokeh, downsampled).

Every engine runs in its own fresh process, so peak memory is that engine's alone: the process's VmHWM (data loading
included; not ru_maxrss, which Linux carries over from the parent across exec). QuantSage runs in the project's .venv; the peers in their own environment, bench/.venv-peers,
which this script creates and fills from bench/peers.txt (pinned; they are not QuantSage dependencies).
QuantSage's figure is the whole backtest() call (replay, then the equity curve, trades and metrics built), beside the
replay loop alone (`timing['run_s']`); data validation, a separate stage, is switched off here (check_data=False) and
its cost printed on its own line. Peers are timed over their run() call (backtesting.py's includes its statistics).

The 1M-bar SMA runs of QuantSage and backtesting.py are repeated (--repeat, default 3), each in a fresh process, and the
best time of each is compared (the highest peak memory of each is reported); backtrader runs once (it takes a minute).

Run: .venv/bin/python bench/bench_engine.py [--backtrader-bars N] [--repeat N] [--quick]
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE/'.venv-peers'
FAST, SLOW, CASH = 10, 30, 10_000_000.

# ------------------------------------------------------------------------------------------------ data
def one_minute_bars(n:int)->pd.DataFrame:
    "n real 1-minute bars: the BTC/USDT file end to end, each copy rescaled to continue from the previous close."
    from quantsage.data.sources import read_bar_file
    from quantsage.testing import shared_data
    base = read_bar_file(shared_data('binance_BTCUSDT_1m.csv'), '1m')
    parts, scale, k = [], 1.0, 0
    while sum(len(p) for p in parts) < n:
        p = base.copy(); p[['open', 'high', 'low', 'close']] *= scale
        p.index = base.index + k*len(base)*pd.Timedelta('1min')
        parts.append(p); scale *= base.close.iloc[-1]/base.open.iloc[0]; k += 1
    return pd.concat(parts).iloc[:n]

def save(df:pd.DataFrame, path:Path):
    np.savez(path, ts=df.index.asi8, **{c: df[c].to_numpy() for c in ('open', 'high', 'low', 'close', 'volume')})

def load(path)->pd.DataFrame:
    z = np.load(path)
    return pd.DataFrame({c: z[c] for c in ('open', 'high', 'low', 'close', 'volume')},
                        index=pd.DatetimeIndex(pd.to_datetime(z['ts'], unit='ns', utc=True), name='ts'))

# ------------------------------------------------------------------------------------------------ workers
def file_mb()->float:
    """Resident file-backed pages now (shared libraries mostly): how many depends on the page cache (right after an install,
    pyarrow's libraries alone map ~15 MB more), so the peak is also shown without them."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('RssFile:'): return int(line.split()[1])/1024
    return float('nan')

def peak_mb()->float:
    "This process's peak resident memory: VmHWM, which exec resets (ru_maxrss would carry over the parent's peak on Linux)."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'): return int(line.split()[1])/1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024

def run_quantsage(path, strategy):
    from quantsage.engine.backtest import backtest
    df = load(path)
    params = dict(fast=FAST, slow=SLOW) if strategy == 'sma_cross' else {}
    r = backtest(strategy, df, symbols='BTC/USDT', check_data=False, commission=0, slippage=0, quantity=1.0,
                 initial_cash=CASH, progress=False, **params)
    return dict(seconds=r.timing['total_s'], replay_s=r.timing['run_s'], bars=len(df), trades=int(r.metrics['n_trades']),
                final=r.metrics['final_equity'], peak_mb=peak_mb(), file_mb=file_mb())

def run_flat(path, _strategy):
    "Time per bar at 10k, 100k and 1M bars in one process, best of 5 each, after one warm-up run (cold start reported apart)."
    from quantsage.engine.backtest import backtest
    df = load(path)
    def once(n):
        r = backtest('sma_cross', df.iloc[:n], symbols='BTC/USDT', check_data=False, commission=0, slippage=0, quantity=1.0,
                     initial_cash=CASH, progress=False, fast=FAST, slow=SLOW)
        return r.timing['total_s']
    cold = once(10_000)
    out = {n: min(once(n) for _ in range(5))/n*1e9 for n in (10_000, 100_000, len(df))}
    return dict(seconds=0, bars=len(df), peak_mb=peak_mb(), ns_per_bar={str(k): v for k, v in out.items()}, cold_10k_ns=cold/10_000*1e9)

def run_validate(path, _strategy):
    from quantsage.data.validate import validate
    df = load(path)
    t = time.perf_counter(); validate(df, '1m', None, 'BTC/USDT'); sec = time.perf_counter() - t
    return dict(seconds=sec, bars=len(df), peak_mb=peak_mb(), file_mb=file_mb())

def _sma(x, n): return pd.Series(x).rolling(n).mean().to_numpy()

def run_backtesting(path, strategy):
    import warnings
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    df = load(path); df.index = df.index.tz_localize(None); df = df.rename(columns=str.capitalize)
    if strategy == 'sma_cross':
        class S(Strategy):
            def init(self):
                self.f = self.I(_sma, self.data.Close, FAST); self.s = self.I(_sma, self.data.Close, SLOW)
            def next(self):
                if crossover(self.f, self.s) and not self.position: self.buy(size=1)
                elif crossover(self.s, self.f) and self.position: self.position.close()
    else:
        def bands(x, n=20, k=2.):
            s = pd.Series(x); m = s.rolling(n).mean(); sd = s.rolling(n).std(ddof=0)
            return m - k*sd, m, (s - m)/sd
        def rsi(x, n=14):
            d = pd.Series(x).diff(); up = d.clip(lower=0).ewm(alpha=1/n, adjust=False).mean(); dn = (-d.clip(upper=0)).ewm(alpha=1/n, adjust=False).mean()
            return (100 - 100/(1 + up/dn)).to_numpy()
        class S(Strategy):
            def init(self):
                self.lo, self.mid, self.z = self.I(bands, self.data.Close); self.r = self.I(rsi, self.data.Close)
            def next(self):
                c = self.data.Close[-1]
                if not self.position:
                    if c < self.lo[-1] and self.z[-1] < -2 and self.r[-1] < 40: self.buy(size=1)
                else:
                    e = self.trades[0].entry_price
                    if c <= e*0.98 or c >= e*1.04 or c >= self.mid[-1]: self.position.close()
    bt = Backtest(df, S, cash=CASH, commission=0, finalize_trades=False)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t = time.perf_counter(); st = bt.run(); sec = time.perf_counter() - t
    return dict(seconds=sec, bars=len(df), trades=int(st['# Trades']), final=float(st['Equity Final [$]']), peak_mb=peak_mb(), file_mb=file_mb())

def run_backtrader(path, strategy):
    import backtrader as bt
    df = load(path); df.index = df.index.tz_localize(None)
    class S(bt.Strategy):
        def __init__(self):
            self.x = bt.indicators.CrossOver(bt.indicators.SMA(self.data.close, period=FAST), bt.indicators.SMA(self.data.close, period=SLOW))
        def next(self):
            if self.x[0] > 0 and not self.position: self.buy(size=1)
            elif self.x[0] < 0 and self.position: self.close()
    cer = bt.Cerebro(stdstats=False); cer.adddata(bt.feeds.PandasData(dataname=df)); cer.addstrategy(S)
    cer.broker.setcash(CASH); cer.broker.setcommission(commission=0.)
    t = time.perf_counter(); r = cer.run(); sec = time.perf_counter() - t
    return dict(seconds=sec, bars=len(df), trades=None, final=cer.broker.getvalue(), peak_mb=peak_mb(), file_mb=file_mb())

def run_multi(_path, _strategy):
    from quantsage.engine.backtest import backtest
    from quantsage.data.catalog import load_bars
    from quantsage.testing import shared_data_dir
    d = shared_data_dir()
    data = {s: load_bars(s, '1d', f"file:{d}", venue='us-adj') for s in ('AAPL', 'GLD', 'IWM', 'JPM', 'MSFT', 'QQQ', 'SPY', 'TLT', 'XLE')}
    data.update({s: load_bars(s, '1h', f"file:{d}") for s in ('BTC/USDT', 'ETH/USDT')})
    r = backtest('mean_reversion', data, check_data=False, fraction=0.1, progress=False)
    return dict(seconds=r.timing['total_s'], bars=int(r.metrics['n_bars']), trades=int(r.metrics['n_trades']), final=r.metrics['final_equity'],
                peak_mb=peak_mb(), file_mb=file_mb(), symbols=len(data))

def run_plot(_path, _strategy):
    import holoviews as hv
    from quantsage.engine.plots import equity_plot
    n = 1_000_000
    eq = pd.Series(1e5*np.exp(np.cumsum(np.random.default_rng(0).normal(0, 1e-4, n))),
                   index=pd.date_range('2020-01-01', periods=n, freq='1min', tz='UTC'))
    t = time.perf_counter(); hv.render(equity_plot(eq, dynamic=False)); static = time.perf_counter() - t
    t = time.perf_counter(); hv.render(equity_plot(eq, dynamic=True)); dynamic = time.perf_counter() - t
    return dict(seconds=static, dynamic_s=dynamic, bars=n, peak_mb=peak_mb(), file_mb=file_mb())

WORKERS = {'quantsage': run_quantsage, 'validate': run_validate, 'flat': run_flat, 'backtesting.py': run_backtesting, 'backtrader': run_backtrader,
           'multi': run_multi, 'plot': run_plot}

# ------------------------------------------------------------------------------------------------ driver
def peers_python()->str:
    py = PEERS/'bin'/'python'
    if not py.exists():
        print(f"creating the peers' environment {PEERS} (backtrader, backtesting.py; pinned in bench/peers.txt) ...", flush=True)
        subprocess.run([sys.executable, '-m', 'venv', str(PEERS)], check=True)
        subprocess.run([str(py), '-m', 'pip', 'install', '-q', '-r', str(HERE/'peers.txt'), '-c', str(ROOT/'constraints.txt')], check=True)
    return str(py)

def spawn(python, engine, path, strategy='sma_cross'):
    out = subprocess.run([python, __file__, '--worker', engine, str(path), strategy], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)) if engine in ('backtesting.py', 'backtrader') else None)
    if out.returncode: raise RuntimeError(f"{engine} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--worker', nargs=3); ap.add_argument('--backtrader-bars', type=int, default=1_000_000)
    ap.add_argument('--quick', action='store_true', help="smaller runs (a smoke test of this script)")
    ap.add_argument('--repeat', type=int, default=3, help="fresh-process runs of QuantSage and backtesting.py on the SMA workload (best time counts)")
    a = ap.parse_args()
    if a.worker:
        engine, path, strategy = a.worker
        print(json.dumps(WORKERS[engine](path, strategy))); return
    big = 100_000 if a.quick else 1_000_000
    qs_py, peer_py = sys.executable, peers_python()
    tmp = Path(tempfile.mkdtemp())
    bars = one_minute_bars(big)
    files = {}
    for n in sorted({10_000, 100_000, big, min(a.backtrader_bars, big)}):
        files[n] = tmp/f"bars_{n}.npz"; save(bars.iloc[:n], files[n])
    print(f"QuantSage engine benchmark · Python {sys.version.split()[0]} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d')}")
    print(f"data: {big:,} real BTC/USDT 1-minute bars (the 130,708-bar file end to end, rescaled to continue)\n")
    rows = []
    def show(label, r):
        rate = r['bars']/r['seconds']
        rows.append((label, r)); print(f"  {label:<44} {r['bars']:>9,} bars {r['seconds']:8.2f} s {rate:>12,.0f} bars/s  peak {r['peak_mb']:6.0f} MB"
                                       + (f"  trades {r['trades']:,}" if r.get('trades') is not None else ''), flush=True)
        return rate
    print("SMA crossover 10/30, next-open fills, no costs (QuantSage: the whole backtest() call, results built; peers: run()):")
    def best_of(python, engine):
        runs = [spawn(python, engine, files[big]) for _ in range(max(a.repeat, 1))]
        best = dict(min(runs, key=lambda r: r['seconds'])); hi = max(runs, key=lambda r: r['peak_mb'])
        best['peak_mb'], best['file_mb'] = hi['peak_mb'], hi['file_mb']
        best['all_s'] = [r['seconds'] for r in runs]
        return best
    qr = best_of(qs_py, 'quantsage')
    q = show('QuantSage (full event pipeline)', qr)
    print(f"  {'  of which the replay loop':<44} {qr['bars']:>9,} bars {qr['replay_s']:8.2f} s {qr['bars']/qr['replay_s']:>12,.0f} bars/s")
    br = best_of(peer_py, 'backtesting.py')
    b = show('backtesting.py 0.6.6', br)
    if a.repeat > 1:
        print(f"  (best of {a.repeat} fresh processes each; all runs: QuantSage {', '.join(f'{x:.2f}' for x in qr['all_s'])} s, "
              f"backtesting.py {', '.join(f'{x:.2f}' for x in br['all_s'])} s)")
    t = show('backtrader 1.9.78', spawn(peer_py, 'backtrader', files[min(a.backtrader_bars, big)]))
    qsr = rows[0][1]
    v = spawn(qs_py, 'validate', files[big])
    print(f"  validation of the same {big:,} bars (a separate stage, not in the figures above): {v['seconds']:.2f} s")
    print(f"  ratios: QuantSage / backtesting.py = {q/b:.1f}x (target >= 5x) · QuantSage / backtrader = {q/t:.1f}x (target >= 35x)")
    rq = qr['bars']/qr['replay_s']
    print(f"  throughput target >= 500,000 bars/s: whole call {'MET' if q >= 500_000 else 'NOT MET'} ({q:,.0f}); replay loop {'MET' if rq >= 500_000 else 'NOT MET'} ({rq:,.0f})")
    bpr = rows[1][1]
    print(f"  peak memory: QuantSage {qsr['peak_mb']:.0f} MB vs backtesting.py {bpr['peak_mb']:.0f} MB "
          f"({'below' if qsr['peak_mb'] < bpr['peak_mb'] else 'NOT below'}); without file-backed pages (libraries, which the page "
          f"cache decides): {qsr['peak_mb'] - qsr['file_mb']:.0f} MB vs {bpr['peak_mb'] - bpr['file_mb']:.0f} MB "
          f"({'below' if qsr['peak_mb'] - qsr['file_mb'] < bpr['peak_mb'] - bpr['file_mb'] else 'NOT below'})")
    print("\nQuantSage time per bar by run length, one process, best of 5 after a warm-up run (target: flat within 20%):")
    r = spawn(qs_py, 'flat', files[big]); per = {int(k): v for k, v in r['ns_per_bar'].items()}
    for n, v in per.items(): print(f"  {n:>9,} bars  {v:7.0f} ns/bar  ({1e9/v:,.0f} bars/s)")
    spread = max(per.values())/min(per.values()) - 1
    print(f"  spread: {spread:.0%} ({'flat' if spread <= 0.2 else 'NOT flat'}); the first run in a fresh process costs "
          f"{r['cold_10k_ns']:.0f} ns/bar on 10k bars (cold start: a few ms, once)")
    print("\nMean reversion (Bollinger 20/2 + z-score + RSI 14 filter, stop 2% / take-profit 4%):")
    mr = spawn(qs_py, 'quantsage', files[big], 'mean_reversion')
    m = show('QuantSage', mr)
    print(f"  {'  of which the replay loop':<44} {mr['bars']:>9,} bars {mr['replay_s']:8.2f} s {mr['bars']/mr['replay_s']:>12,.0f} bars/s")
    mb = show('backtesting.py 0.6.6', spawn(peer_py, 'backtesting.py', files[big], 'mean_reversion'))
    print(f"  target >= 200,000 bars/s: {'MET' if m >= 200_000 else 'NOT MET'} · QuantSage / backtesting.py = {m/mb:.1f}x")
    print("\nMulti-symbol, multi-asset (9 US daily files + BTC/USDT and ETH/USDT hourly, mean reversion, one portfolio):")
    show('QuantSage', spawn(qs_py, 'multi', files[big]))
    print("\nDrawing a 1,000,000-point equity curve with drawdown (HoloViews/Bokeh, LTTB downsampling):")
    r = spawn(qs_py, 'plot', files[big])
    print(f"  static (report): {r['seconds']:.2f} s · dynamic (notebook, re-samples on zoom): {r['dynamic_s']:.2f} s")

if __name__ == '__main__': main()

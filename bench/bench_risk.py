"""What the risk layers cost: the mean-reversion benchmark with and without them, on the same real bars.

Workload: the Bollinger/z-score/RSI mean-reversion rule (the engine benchmark's) on 1,000,000 one-minute bars (the
real Binance BTC/USDT 1-minute file laid end to end, rescaled to continue; see bench_engine.py), no costs, cash 10M.
Variants, each in its own fresh process, best of 3 runs of the whole backtest() call:
  * no risk layers (risk=None: the order path's risk slot approves everything);
  * the risk checks and breakers of config/risk.yaml without the exit pair (position/symbol/invested/correlation checks
    on every order and again at every fill, the breakers watching equity on held symbols' bars and every fill): what the
    issue's overhead target is about, "risk checks add at most 20%";
  * the four layers of config/risk.yaml (risk=True: position/symbol/invested/correlation checks on every order, the
    breakers watching equity on every bar of a held symbol and every fill, the stop/take-profit pair on every position,
    the limits again at every fill), one unit per trade: the layers check everything and rarely bind;
  * the same layers with 95% of equity asked per trade: every entry is resized to 10% and re-checked at its fill.
The issue's target: risk checks add at most 20% to the time per bar. The exit pair is printed beside it: it doubles the
orders (a stop and a take-profit per position, placed, recorded and cancelled), which is more work, not more checking.

Run: .venv/bin/python bench/bench_risk.py [--quick]
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_engine import one_minute_bars, save, load, peak_mb, CASH   # noqa: E402  (same data, same loader)

def worker(path, variant):
    from quantsage.engine.backtest import backtest
    df = load(path)
    from quantsage.limits import risk_from_config
    opts = {'none': dict(quantity=1.0), 'checks': dict(quantity=1.0), 'layers': dict(quantity=1.0, risk=True),
            'layers_binding': dict(fraction=0.95, risk=True)}[variant]
    best, r = None, None
    for _ in range(3):
        if variant == 'checks': opts['risk'] = risk_from_config(); opts['risk'].exits = None   # a fresh manager per run
        r = backtest('mean_reversion', df, symbols='BTC/USDT', check_data=False, commission=0, slippage=0,
                     initial_cash=CASH, progress=False, **opts)
        best = r.timing['total_s'] if best is None else min(best, r.timing['total_s'])
    rk = r.risk
    return dict(seconds=best, bars=len(df), trades=int(r.metrics['n_trades']), orders=int(r.metrics['n_orders']),
                decisions=rk.get('decisions', {}), state=rk.get('state', ''), exits=rk.get('exits', {}),
                alerts=len(r.risk_alerts), peak_mb=peak_mb())

def spawn(variant, path):
    out = subprocess.run([sys.executable, __file__, '--worker', variant, str(path)], capture_output=True, text=True)
    if out.returncode: raise RuntimeError(f"{variant} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--worker', nargs=2); ap.add_argument('--quick', action='store_true')
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker[1], a.worker[0]))); return
    n = 100_000 if a.quick else 1_000_000
    path = Path(tempfile.mkdtemp())/f"bars_{n}.npz"; save(one_minute_bars(n), path)
    print(f"QuantSage risk-layer overhead · Python {sys.version.split()[0]} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d')}")
    print(f"mean reversion on {n:,} real BTC/USDT 1-minute bars, no costs; best of 3 whole backtest() calls, each variant in its own process\n")
    rates = {}
    for v, label in (('none', 'no risk layers'), ('checks', 'risk checks and breakers, one unit per trade'),
                     ('layers', 'four layers with the exit pair, one unit'),
                     ('layers_binding', 'four layers, 95% asked (every entry resized)')):
        r = spawn(v, path); rates[v] = r['bars']/r['seconds']
        d = r['decisions']
        print(f"  {label:<46} {r['seconds']:6.2f} s {rates[v]:>11,.0f} bars/s  trades {r['trades']:>6,}  orders {r['orders']:>6,}"
              + (f"  risk: {d.get('approved', 0):,} approved / {d.get('resized', 0):,} resized / {d.get('rejected', 0):,} rejected, "
                 f"{r['alerts']:,} alerts, exits {r['exits']}, state {r['state']}" if d else ''), flush=True)
    for v in ('checks', 'layers', 'layers_binding'):
        over = rates['none']/rates[v] - 1
        print(f"  overhead of '{v}': {over:+.1%} time per bar" + (f" (target <= +20%: {'MET' if over <= 0.2 else 'NOT MET'})" if v == 'checks' else ''))

if __name__ == '__main__': main()

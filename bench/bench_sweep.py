"""A parameter sweep on Dask: 1 worker process against 2 on this machine, the same 40 configurations.

Workload: the mean-reversion strategy over a 5 x 4 x 2 grid (bb_period x z_entry x rsi_entry = 40 configurations) on
the real Binance BTC/USDT hourly file (73,265 bars, 2018-2026), default costs, one backtest per configuration, each a
Dask task on a LocalCluster of single-threaded worker processes. Timed: the sweep's task phase (scatter, run, gather:
`timing['run_s']`) and the whole call including starting and stopping the cluster. The floor is the same 40 backtests
in a plain loop in this process. The issue's target: 2 workers at least 1.7x faster than 1.

Run: .venv/bin/python bench/bench_sweep.py
"""
import os, sys, time

def main():
    from quantsage.data.catalog import load_bars
    from quantsage.engine.sweep import sweep, param_grid, run_task
    btc = load_bars('BTC/USDT', '1h', 'file')
    space = {'bb_period': [10, 15, 20, 25, 30], 'z_entry': [-1.5, -2.0, -2.5, -3.0], 'rsi_entry': [35.0, 45.0]}
    n = len(param_grid(space, 'mean_reversion'))
    print(f"QuantSage sweep benchmark · Python {sys.version.split()[0]} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d')}")
    print(f"mean reversion, {n} configurations, BTC/USDT 1h ({len(btc):,} real bars), one backtest per task\n")
    t0 = time.perf_counter()
    for p in param_grid(space, 'mean_reversion'):
        row = run_task('mean_reversion', btc, 'BTC/USDT', p)
        assert row['status'] == 'ok', row['error']
    serial = time.perf_counter() - t0
    print(f"  floor: plain loop in this process                 {serial:7.2f} s")
    runs = {}
    for w in (1, 2):
        t0 = time.perf_counter()
        res = sweep('mean_reversion', {'BTC/USDT': btc}, space, workers=w, progress=False)
        total = time.perf_counter() - t0
        assert len(res.table) == n and (res.table.status == 'ok').all()
        runs[w] = (res.timing['run_s'], total, res)
        print(f"  Dask LocalCluster, {w} worker(s): tasks {res.timing['run_s']:7.2f} s · whole call {total:7.2f} s "
              f"(cluster start {res.timing['cluster_s']:.2f} s)")
    same = runs[1][2].table.drop(columns='seconds').equals(runs[2][2].table.drop(columns='seconds'))
    ratio, ratio_total = runs[1][0]/runs[2][0], runs[1][1]/runs[2][1]
    print(f"  speed-up 2 workers vs 1: tasks {ratio:.2f}x, whole call {ratio_total:.2f}x "
          f"(target >= 1.7x: {'MET' if ratio >= 1.7 else 'NOT MET'}); identical results: {same}")

if __name__ == '__main__': main()

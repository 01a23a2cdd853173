"""Parameter sweeps on Dask with real bars: a running cluster reached by its scheduler address (and left running), one
symbol's bad data reported as failed rows while the rest of the sweep completes, rows identical to the same backtests
run in-process, random sweeps reproducible from their seed, in- and out-of-sample metrics, rows stored and read back,
and the CLI command."""
import subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from quantsage.core import ConfigError
from quantsage.data.store import Store
from quantsage.engine.sweep import sweep, run_task, param_random

SPLIT = '2024-01-01T00:00Z'


@pytest.fixture(scope='module')
def cluster():
    from distributed import LocalCluster
    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    yield c
    c.close()


@pytest.fixture(scope='module')
def recent(btc_1h, eth_1h):
    "The last ~9 months of hourly BTC and ETH (enough for in- and out-of-sample, cheap enough for a test)."
    return {'BTC/USDT': btc_1h.loc['2023-09-01':'2024-06-01'], 'ETH/USDT': eth_1h.loc['2023-09-01':'2024-06-01']}


def test_a_running_cluster_by_address_failures_reported_rows_as_in_process(cluster, recent):
    broken = recent['ETH/USDT'].copy()
    broken.iloc[100, broken.columns.get_loc('low')] = -1.0                  # an impossible bar in one symbol's data
    data = {'BTC/USDT': recent['BTC/USDT'], 'ETH/USDT': broken}
    space = {'bb_period': [15, 25], 'z_entry': [-1.5, -2.0]}
    res = sweep('mean_reversion', data, space, split=SPLIT, scheduler=cluster.scheduler_address, progress=False)
    t = res.table
    assert len(t) == 8 and list(t.seq) == list(range(8))                       # one row per task, in task order
    assert (t[t.symbol == 'BTC/USDT'].status == 'ok').all()
    bad = t[t.symbol == 'ETH/USDT']
    assert (bad.status == 'error').all() and bad.error.str.contains('ETH/USDT').all()   # says which symbol, and why
    assert res.timing['workers'] == 2
    assert len(cluster.scheduler_info['workers']) == 2                         # a cluster it did not start stays up
    for p in ({'bb_period': 15, 'z_entry': -2.0}, {'bb_period': 25, 'z_entry': -1.5}):
        one = run_task('mean_reversion', recent['BTC/USDT'], 'BTC/USDT', p, split=SPLIT)
        row = t[(t.symbol == 'BTC/USDT') & (t.bb_period == p['bb_period']) & (t.z_entry == p['z_entry'])].iloc[0]
        for k, v in one['metrics'].items():
            assert row[k] == v or (np.isnan(row[k]) and np.isnan(v)), k       # bit-identical to the in-process backtest
    assert {'is_sharpe', 'oos_sharpe', 'is_n_trades', 'oos_n_trades'} <= set(t.columns)


def test_random_sweeps_are_reproducible_and_stored(cluster, recent, tmp_path):
    space = {'bb_period': (10, 30), 'bb_std': (1.5, 2.5)}
    a = sweep('mean_reversion', recent, space, method='random', n=4, seed=7, scheduler=cluster.scheduler_address,
              progress=False, commission=0, slippage=0)
    b = sweep('mean_reversion', recent, space, method='random', n=4, seed=7, scheduler=cluster.scheduler_address, progress=False,
              commission=0, slippage=0)
    assert [r['params'] for r in a.rows] == [r['params'] for r in b.rows]    # 4 sets x 2 symbols, the same draw
    assert a.table.drop(columns='seconds').equals(b.table.drop(columns='seconds'))
    assert [r['params'] for r in a.rows[:4]] == param_random(space, 4, 7)
    st = Store(f"sqlite:///{tmp_path}/sw.sqlite")
    assert a.save(st) == 8
    rows = st.read_table('sweep_results')
    assert list(rows.seq) == list(range(8)) and set(rows.status) == {'ok'}
    assert rows.params[0] == a.rows[0]['params'] and rows.metrics[0]['sharpe'] == pytest.approx(a.rows[0]['metrics']['sharpe'])
    with pytest.raises(Exception, match='already stored'): a.save(st)
    st.close()


def test_refusals_before_any_cluster_starts(recent):
    with pytest.raises(ConfigError, match=r"MeanReversion has no parameter\(s\) \['bb_perod'\]"):
        sweep('mean_reversion', recent, {'bb_perod': [10]}, workers=1)
    with pytest.raises(ConfigError, match="method must be 'grid' or 'random'"):
        sweep('mean_reversion', recent, {'bb_period': [10]}, method='bayes', workers=1)
    with pytest.raises(ConfigError, match='symbols'):
        sweep('mean_reversion', recent, {'bb_period': [10]}, symbols=['SOL/USDT'], workers=1)


def test_cli_sweep_on_a_running_cluster(cluster, tmp_path, shared):
    cli = str(Path(sys.executable).with_name('quantsage'))
    db = f"sqlite:///{tmp_path}/cli.sqlite"
    r = subprocess.run([cli, 'sweep', '--strategy', 'sma_cross', '--symbols', 'BTC/USDT', '--timeframe', '1h', '--source', f'file:{shared}',
                        '--start', '2024-01-01', '--end', '2024-03-01', '--param', 'fast=5,10', '--param', 'slow=30,60',
                        '--scheduler', cluster.scheduler_address, '--split', '2024-02-01T00:00Z', '--metric', 'sharpe',
                        '--db-url', db], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'SweepResult(sma_cross, 4 tasks, 4 ok, 2 workers' in r.stdout and 'oos_sharpe' in r.stdout
    st = Store(db)
    assert len(st.read_table('sweep_results')) == 4
    st.close()

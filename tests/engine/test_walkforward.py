"""Walk-forward validation on real BTC/USDT hourly bars: folds never let the test window touch the bars the parameters
were chosen on (purge included), each fold's choice is the in-sample best by the metric, each test window is exactly
that backtest on those bars with the capital the previous window ended with, the run is deterministic, and the CLI
runs it."""
import subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from quantsage.core import ConfigError
from quantsage.engine.backtest import backtest
from quantsage.engine.walkforward import walk_forward
from quantsage.engine.sweep import param_grid

SPACE = {'bb_period': [15, 25], 'z_entry': [-1.5, -2.0]}


@pytest.fixture(scope='module')
def btc(btc_1h): return btc_1h.loc['2022-01-01':'2023-06-30']


@pytest.fixture(scope='module')
def wf(btc):
    return walk_forward('mean_reversion', {'BTC/USDT': btc}, SPACE, train=4_000, test=2_000, purge=24, progress=False)


def test_folds_are_out_of_sample_and_purged(wf, btc):
    f = wf.folds
    assert len(f) == (len(btc) - 4_000)//2_000
    for r in f.itertuples():
        assert r.train_end < r.test_start                                     # nothing of the test window was seen
        gap = btc.index.get_loc(r.test_start) - btc.index.get_loc(r.train_end)
        assert gap == 24 + 1                                                  # 24 purged bars between them
    assert (f.test_start.iloc[1:].to_numpy() > f.test_end.iloc[:-1].to_numpy()).all()   # test windows do not overlap


def test_each_choice_is_the_in_sample_best_and_each_test_is_that_backtest(wf, btc):
    cash = 100_000.
    for k, r in enumerate(wf.folds.itertuples()):
        train = btc.loc[r.train_start:r.train_end]
        scores = [backtest('mean_reversion', train, symbols='BTC/USDT', progress=False, **p).metrics['sharpe'] for p in param_grid(SPACE)]
        scores = [s if np.isfinite(s) else -np.inf for s in scores]
        assert r.params == param_grid(SPACE)[int(np.argmax(scores))] and r.is_sharpe == max(scores)
        oos = backtest('mean_reversion', btc.loc[r.test_start:r.test_end], symbols='BTC/USDT', initial_cash=cash, progress=False, **r.params)
        assert wf.curves[k].to_numpy().tolist() == oos.equity.to_numpy().tolist()
        assert r.oos_total_return == oos.metrics['total_return']
        cash = float(oos.equity.iloc[-1])
    eq = wf.equity
    assert eq.index.is_monotonic_increasing and eq.iloc[-1] == cash
    assert wf.metrics['total_return'] == pytest.approx(cash/100_000. - 1, rel=1e-12)


def test_deterministic_and_refusals(wf, btc):
    again = walk_forward('mean_reversion', {'BTC/USDT': btc}, SPACE, train=4_000, test=2_000, purge=24, progress=False)
    assert again.folds.drop(columns='params').equals(wf.folds.drop(columns='params')) and list(again.folds.params) == list(wf.folds.params)
    with pytest.raises(ConfigError, match='overlap'):
        walk_forward('mean_reversion', btc, SPACE, symbol='BTC/USDT', train=4_000, test=2_000, step=1_000)
    with pytest.raises(ConfigError, match="unknown metric 'sharp'"):
        walk_forward('mean_reversion', btc, SPACE, symbol='BTC/USDT', train=4_000, test=2_000, metric='sharp')


def test_cli_walkforward(shared, tmp_path):
    cli = str(Path(sys.executable).with_name('quantsage'))
    r = subprocess.run([cli, 'walkforward', '--strategy', 'sma_cross', '--symbol', 'ETH/USDT', '--timeframe', '1h', '--source', f'file:{shared}',
                        '--start', '2023-01-01', '--end', '2023-07-01', '--param', 'fast=5,10', '--param', 'slow=30,60',
                        '--train', '1500', '--test', '700', '--purge', '10', '--db-url', f"sqlite:///{tmp_path}/wf.sqlite"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'WalkForwardResult(sma_cross on ETH/USDT: 4 folds' in r.stdout and 'positive_share' in r.stdout and 'sharpe > 1.5' in r.stdout


def test_ml_strategy_is_refitted_on_each_training_window_and_predicts_only_ahead(btc_1h):
    "Each fold of an XGBoost walk-forward is exactly: a model fitted on that fold's training bars, trading the next bars."
    from quantsage.strategies.xgboost import XGBoostStrategy
    bars = btc_1h.loc['2023-01-01':'2023-12-31']
    opts = dict(threshold=0.55, n_estimators=40)
    wf = walk_forward('xgboost', {'BTC/USDT': bars}, train=3_000, test=1_500, purge=24, progress=False, **opts)
    assert len(wf.folds) == (len(bars) - 3_000)//1_500 and list(wf.importance.index) == list(range(len(wf.folds)))
    assert (wf.importance.sum(axis=1) > 0).all()                                      # a gain per feature per fold
    cash = 100_000.
    for k, r in enumerate(wf.folds.itertuples()):
        assert r.params == opts
        model = XGBoostStrategy(**opts).fit(bars.loc[r.train_start:r.train_end])
        assert pd.Timestamp(model.meta['train_end']) < r.test_start                   # never trained on what it trades
        oos = backtest(model, bars.loc[r.test_start:r.test_end], symbols='BTC/USDT', initial_cash=cash, progress=False)
        assert wf.curves[k].to_numpy().tolist() == oos.equity.to_numpy().tolist()
        cash = float(oos.equity.iloc[-1])
    with pytest.raises(ConfigError, match='fitted on each training window'):
        walk_forward('xgboost', {'BTC/USDT': bars}, {'threshold': [0.55, 0.6]}, train=3_000, test=1_500)

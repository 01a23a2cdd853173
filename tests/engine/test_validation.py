"""Validation across regimes: what a failing dataset, a wrong call and a preset's own exits do."""
import math
import pandas as pd
import pytest
from quantsage.core import ConfigError
from quantsage.testing import synth_bars
from quantsage.engine.validation import validate_strategy, preset_options, bars_in
from quantsage.engine.backtest import backtest
from quantsage.strategies import make_strategy

def hourly(seed, n=24*240):
    return synth_bars(n, seed=seed, freq='1h', vol=0.004)

def test_a_failing_dataset_is_reported_and_the_others_still_validated():
    rep = validate_strategy('sma_cross', {'ok': hourly(1), 'not bars': [1, 2, 3], 'bad params': hourly(2)}, {'fast': [5], 'slow': [40]},
                   train='60D', test='30D', regime_window='30D', workers=0, progress=False, asset_type='crypto', check_data=False)
    assert list(rep.results) == ['ok', 'bad params']
    assert rep.errors.dataset.tolist() == ['not bars'] and 'expected a bar DataFrame' in rep.errors.error.iloc[0]
    assert 'did not run' in rep.summary() and 'ok: out of sample' in rep.summary()

def test_a_refused_parameter_set_fails_that_dataset_with_the_strategys_words():
    rep = validate_strategy('sma_cross', {'A': hourly(3)}, {'fast': [50], 'slow': [10]}, train='60D', test='30D', workers=0,
                   progress=False, asset_type='crypto', check_data=False)
    assert rep.results == {} and 'fast' in rep.errors.error.iloc[0]
    assert rep.passes.empty and len(rep.table) == 0

def test_wrong_calls_are_refused_before_any_work():
    with pytest.raises(ConfigError, match='registered name or class'):
        validate_strategy(make_strategy('sma_cross'), {'A': hourly(1)}, workers=0)
    with pytest.raises(ConfigError, match='dict'):
        validate_strategy('sma_cross', hourly(1), workers=0)
    with pytest.raises(ConfigError, match="duration like '365D'"):
        bars_in('one year', hourly(1))

def test_regime_rows_partition_the_out_of_sample_bars_and_the_verdicts_follow_the_values():
    rep = validate_strategy('sma_cross', {'A': hourly(4, 24*400)}, {'fast': [5, 10], 'slow': [40]}, train='90D', test='30D',
                   regime_window='20D', regime_threshold=0.03, workers=0, progress=False, asset_type='crypto', check_data=False)
    t = rep.table.loc['A']
    assert t.loc['overall', 'share_of_bars'] == 1.0
    assert math.isclose(t.drop('overall').share_of_bars.sum(), 1.0, abs_tol=1e-12)
    assert math.isclose((1 + t.drop('overall').total_return.fillna(0)).prod() - 1, t.loc['overall', 'total_return'], rel_tol=1e-9)
    for _, r in t.iterrows():
        assert (r['sharpe > 1.5'] == 'PASS') == (r.sharpe > 1.5)
        assert (r['max_drawdown > -0.15'] == 'PASS') == (r.max_drawdown > -0.15)
        assert (r['win_rate > 0.5'] == 'PASS') == (r.win_rate > 0.5)          # NaN (no trades) fails

def test_a_presets_exits_reach_every_run():
    strategy, fixed, opts = preset_options('mean_reversion_crypto')
    assert opts['risk'] == {'exits': {'max_holding_bars': 72}} and type(opts['sizer']).__name__ == 'RiskBased'
    strategy, fixed, opts = preset_options({'strategy': 'mean_reversion', 'params': {'z_entry': -1.0, 'rsi_entry': 60.},
                                            'exits': {'max_holding_bars': 5}})
    bars = hourly(5, 24*120)
    kw = dict(symbols='SYN', asset_type='crypto', check_data=False, progress=False, **fixed)
    with_preset = backtest(strategy, bars, risk=opts['risk'], **kw)
    plain = backtest(strategy, bars, risk=True, **kw)
    hold = lambda r: (r.trades.exit_time - r.trades.entry_time).max()
    assert hold(plain) > pd.Timedelta(hours=6)                                   # without it, some trade is held longer ...
    assert hold(with_preset) <= pd.Timedelta(hours=6)                            # ... the preset's 5-bar time exit cuts it
    again = backtest(strategy, bars, risk=opts['risk'], **kw)                    # the same options dict serves another run
    assert again.fingerprint == with_preset.fingerprint

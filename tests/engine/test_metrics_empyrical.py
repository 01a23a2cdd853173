"""Sharpe, Sortino, max drawdown, annual return and volatility agree with empyrical-reloaded to 1e-9 on real runs.

empyrical is a test-only dependency: the engine computes its own figures, and this suite checks that they are the
ones the field means by those names, on the per-bar returns of real backtests (crypto hourly, US stocks daily)."""
import math
import numpy as np, pytest
import empyrical as ep
from quantsage.engine.backtest import backtest

def _returns(res):
    eq = np.r_[res.initial_cash, res.equity.to_numpy()]
    return eq[1:]/eq[:-1] - 1.

def _close(a, b, name):
    assert math.isfinite(a) and math.isfinite(b), (name, a, b)
    assert abs(a - b) <= 1e-9*max(1., abs(b)), f"{name}: quantsage {a!r} vs empyrical {b!r}"

@pytest.mark.parametrize('case', ['mean_reversion BTC 1h', 'momentum ETH 1h', 'sma_cross SPY 1d'])
def test_metrics_agree_with_empyrical(case, btc_1h, eth_1h, spy_1d):
    strat, sym, _ = case.split()
    data = {'BTC': btc_1h.loc['2021':'2023'], 'ETH': eth_1h.loc['2021':'2023'], 'SPY': spy_1d}[sym]
    res = backtest(strat, data, symbols=data.attrs['symbol'], **({'fast': 20, 'slow': 50} if strat == 'sma_cross' else {}))
    assert res.metrics['n_trades'] > 5, "the run must trade for the comparison to mean something"
    r, ann = _returns(res), res.metrics['periods_per_year']
    m = res.metrics
    _close(m['sharpe'], ep.sharpe_ratio(r, annualization=ann), 'sharpe')
    _close(m['sortino'], ep.sortino_ratio(r, annualization=ann), 'sortino')
    _close(m['max_drawdown'], ep.max_drawdown(r), 'max_drawdown')
    _close(m['annual_return'], ep.annual_return(r, annualization=ann), 'annual_return')
    _close(m['annual_volatility'], ep.annual_volatility(r, annualization=ann), 'annual_volatility')
    _close(m['calmar'], ep.calmar_ratio(r, annualization=ann), 'calmar')

def test_annualization_follows_the_market(btc_1h, spy_1d):
    assert backtest('sma_cross', btc_1h.iloc[:2000], symbols='BTC/USDT').metrics['periods_per_year'] == 365*24
    assert backtest('sma_cross', spy_1d.iloc[:500], symbols='SPY').metrics['periods_per_year'] == 252

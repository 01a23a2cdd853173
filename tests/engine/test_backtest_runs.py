"""End-to-end backtests on real data: determinism across processes, the step kernel equals the replay loop on a
multi-asset run, stored results on SQLite and PostgreSQL (one transaction, nothing partial), bad data refused."""
import json, os, subprocess, sys
import numpy as np, pandas as pd, pytest
from quantsage.core import DataError, StorageError
from quantsage.data.store import Store
from quantsage.engine.backtest import backtest, check_no_lookahead, LookAheadError
from quantsage.strategies import Strategy

def _multi(shared):
    from quantsage.data.catalog import load_bars
    data = {s: load_bars(s, '1d', f"file:{shared}", start='2023-01-01', venue='us-adj') for s in ('SPY', 'QQQ', 'TLT')}
    data['BTC/USDT'] = load_bars('BTC/USDT', '1h', f"file:{shared}", start='2023-01-01', end='2023-12-31')
    return data

def test_same_inputs_same_fingerprint_in_another_process(btc_1h):
    r = backtest('mean_reversion', btc_1h.loc['2023'], symbols='BTC/USDT')
    code = ("from quantsage.engine.backtest import backtest; from quantsage.data.catalog import load_bars; "
            "from quantsage.testing import shared_data_dir; "
            "d = load_bars('BTC/USDT', '1h', f'file:{shared_data_dir()}').loc['2023']; "
            "print(backtest('mean_reversion', d, symbols='BTC/USDT').fingerprint)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED='12345'))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == r.fingerprint

def test_step_kernel_equals_replay_loop_on_a_multi_asset_run(shared):
    data = _multi(shared)
    fast = backtest('mean_reversion', data, fraction=0.25)
    slow = backtest('mean_reversion', data, fraction=0.25, loop='step')
    assert fast.metrics['n_trades'] > 10 and set(fast.trades.symbol) >= {'BTC/USDT', 'SPY'}
    assert slow.fingerprint == fast.fingerprint
    pd.testing.assert_frame_equal(slow.trades, fast.trades)

def test_stock_orders_fill_only_in_sessions(shared):
    res = backtest('mean_reversion', _multi(shared), fraction=0.25)
    fills = res.fills
    stock = fills[fills.symbol != 'BTC/USDT']
    sessions = set(pd.concat([res.bars[s] for s in ('SPY', 'QQQ', 'TLT')]).index)
    assert len(stock) and set(stock.ts_event) <= sessions            # a stock fill happens on one of its session bars

def test_lookahead_check_on_real_data(btc_1h):
    class PeekAtNextClose(Strategy):
        def on_market_data(self, ev):
            s = self._view._data[ev.symbol]
            k = int(np.searchsorted(s.ts, ev.ts_event, 'right'))
            return self.long(ev) if k < len(s.ts) and s.cols['close'][k] > ev.close else self.exit(ev)
    data = btc_1h.loc['2023-01':'2023-03']
    with pytest.raises(LookAheadError, match='It uses bars that had not closed yet'):
        check_no_lookahead(PeekAtNextClose, data, symbols='BTC/USDT')
    for name in ('sma_cross', 'mean_reversion', 'momentum'):
        assert check_no_lookahead(name, data, symbols='BTC/USDT').same.all()

def test_result_is_stored_in_one_transaction(backend_url, btc_1h, tmp_path):
    res = backtest('mean_reversion', btc_1h.loc['2023'], symbols='BTC/USDT')
    report = res.save_report(tmp_path/'r.html')
    with Store(backend_url) as st:
        counts = res.save(st, report_path=str(report))
        assert counts['trades'] == res.metrics['n_fills'] and counts['signals'] == len(res.signals)
        row = st.read_table('backtest_results').iloc[0]
        assert (row.fingerprint, row.report_path, row.strategy) == (res.fingerprint, str(report), 'mean_reversion')
        assert row.metrics['n_trades'] == res.metrics['n_trades']
        eq = st.read_table('performance_metrics', run_id=res.run_id)
        assert np.array_equal(eq.value.to_numpy(), res.equity.to_numpy())        # bit-equal floats back
        before = st.table_counts()
        with pytest.raises(StorageError, match='already stored'): res.save(st)
        assert st.table_counts() == before                                        # nothing partial
    assert report.stat().st_size > 100_000 and b'Bokeh' in report.read_bytes()

def test_bad_data_is_refused_naming_the_culprit(btc_1h):
    bad = btc_1h.loc['2023-01'].copy()
    bad.iloc[100, bad.columns.get_loc('high')] = bad.low.iloc[100]*0.5           # high below low: an impossible bar
    with pytest.raises(DataError, match=r'backtest refused the data of BTC/USDT: .*REJECTED: high_below_open_close'):
        backtest('sma_cross', bad, symbols='BTC/USDT')
    ok = backtest('sma_cross', bad, symbols='BTC/USDT', policies={'high_below_open_close': 'drop', 'low_above_open_close': 'drop'})
    assert ok.metrics['n_bars'] == len(bad) - 1
    assert ok.data_reports['BTC/USDT'].actions                                      # what was done is recorded

def test_costs_are_charged_as_configured(btc_1h):
    d = btc_1h.loc['2023-01':'2023-06']
    free = backtest('sma_cross', d, symbols='BTC/USDT', commission=0, slippage=0, fast=24, slow=96)
    paid = backtest('sma_cross', d, symbols='BTC/USDT', commission=10, slippage=5, fast=24, slow=96)
    f = paid.fills
    notional = (f.quantity*f.price)
    assert np.allclose(f.fee, notional*10e-4, rtol=1e-12)                           # 10 bps taker on every fill
    opens = d.open.reindex(f.ts_event).to_numpy()
    buys = (f.side == 'buy').to_numpy()
    assert np.allclose(f.price[buys], opens[buys]*(1 + 5e-4), rtol=1e-12)          # 5 bps against the order
    assert np.allclose(f.price[~buys], opens[~buys]*(1 - 5e-4), rtol=1e-12)
    assert paid.metrics['final_equity'] < free.metrics['final_equity']
    assert paid.metrics['fees'] == pytest.approx(f.fee.sum(), rel=1e-12)

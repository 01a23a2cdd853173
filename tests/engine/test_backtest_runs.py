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
        rt = st.read_table('round_trips', run_id=res.run_id)
        assert rt.pnl.tolist() == res.trades.pnl.tolist() and list(rt.exit_ts) == list(res.trades.exit_time)
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


class _CrossSymbol(Strategy):
    "Trades ETH on BTC's bars: the order exists from BTC's close, so ETH's bar closing at that same instant must not fill it."
    def init_symbol(self, symbol): return __import__('types').SimpleNamespace(n=0)
    def on_market_data(self, ev):
        if ev.symbol != 'BTC/USDT': return None
        st = self.state(ev.symbol); st.n += 1
        if st.n % 50 == 10: return self._signal(ev._replace(symbol='ETH/USDT'), 'long', 1.0, 'cross-symbol')
        if st.n % 50 == 30: return self._signal(ev._replace(symbol='ETH/USDT'), 'exit', 1.0, 'cross-symbol')

def test_an_order_never_fills_in_a_bar_that_began_before_it(btc_1h, eth_1h):
    res = backtest(_CrossSymbol, {'BTC/USDT': btc_1h.loc['2023-01'], 'ETH/USDT': eth_1h.loc['2023-01']}, fraction=0.5)
    sig, fills = res.signals, res.fills
    assert len(fills) >= 20
    eth = eth_1h.loc['2023-01']
    for s, f in zip(sig.itertuples(), fills.itertuples()):
        assert f.ts_event > s.ts_event                                         # the next ETH bar, not the one closing with BTC's
        assert f.price*(1 - 1e-3) < eth.open.loc[f.ts_event]*(1 + 1e-3) and eth.open.loc[f.ts_event] != eth.open.loc[s.ts_event]

def test_flipping_a_short_into_a_long_is_cash_checked(spy_1d):
    from quantsage.strategies import Strategy as S
    class Flip(S):
        def init_symbol(self, symbol): return __import__('types').SimpleNamespace(n=0)
        def on_market_data(self, ev):
            st = self.state(ev.symbol); st.n += 1
            return self.short(ev) if st.n == 5 else (self.long(ev) if st.n == 10 else None)
    res = backtest(Flip, spy_1d.loc['2023'], symbols='SPY', quantity=1000.)          # 1000 shares ~ $380k: more than the cash
    assert list(res.risk_alerts.rule) == ['insufficient_cash']                        # the flip (cover + new long) is refused
    assert res.positions == {'SPY': -1000.}

def test_mixed_markets_are_annualized_by_the_curve_they_make(shared):
    res = backtest('mean_reversion', _multi(shared), fraction=0.25)
    ts = res.equity.index
    years = (ts[-1] - ts[0])/pd.Timedelta('365.25D')
    assert res.metrics['periods_per_year'] == pytest.approx((len(ts) - 1)/years, rel=1e-12)
    cagr = (res.metrics['final_equity']/res.initial_cash)**(1/years) - 1
    assert res.metrics['annual_return'] == pytest.approx(cagr, rel=2e-3)             # the annual return is a real yearly rate

def test_occasional_peeking_is_caught_bar_by_bar(btc_1h):
    from quantsage.strategies import SmaCross
    class PeekSometimes(SmaCross):
        def on_market_data(self, ev):
            s = self._view._data[ev.symbol]
            k = int(np.searchsorted(s.ts, ev.ts_event, 'right'))
            if self.position(ev.symbol) > 0 and k < len(s.ts) and s.cols['close'][k] < ev.close*0.98: return self.exit(ev, reason='peeked')
            return super().on_market_data(ev)
    data = btc_1h.loc['2022-05':'2022-07']
    assert backtest(PeekSometimes, data, symbols='BTC/USDT').signals.reason.eq('peeked').sum() > 0
    with pytest.raises(LookAheadError, match='run bar by bar with only the closed bars held, the strategy decided differently'):
        check_no_lookahead(PeekSometimes, data, symbols='BTC/USDT', cuts=2)

def test_cleaning_that_reads_the_future_is_refused(btc_1h):
    from quantsage.core import ConfigError
    with pytest.raises(ConfigError, match="policy 'interpolate' for gap fills a bar from the bar after it"):
        backtest('sma_cross', btc_1h.loc['2023-01'], symbols='BTC/USDT', policies={'gap': 'interpolate'})

def test_options_that_cannot_hold_are_refused_not_ignored(btc_1h, eth_1h):
    from quantsage.core import ConfigError
    from quantsage.portfolio import FixedQuantity
    d = btc_1h.loc['2023-01']
    both = {'BTC/USDT': d, 'ETH/USDT': eth_1h.loc['2023-01']}
    cases = [(dict(data=d, symbols=['A', 'B']), ConfigError, 'one bar frame is one symbol'),
             (dict(data=both, symbols=['SOL/USDT']), ConfigError, "symbols ['SOL/USDT'] are not in the data"),
             (dict(data=d, symbols='BTC/USDT', check_data=False, policies={'gap': 'ffill'}), ConfigError, 'needs check_data=True'),
             (dict(data=d, symbols='BTC/USDT', timeframe='1d'), DataError, "timeframe='1d' but these are 1h bars"),
             (dict(data=d, symbols='BTC/USDT', sizer=FixedQuantity), ConfigError, 'sizer= takes a Sizer instance'),
             (dict(data=d, symbols='BTC/USDT', allow_short='no'), ConfigError, 'allow_short must be True or False'),
             (dict(data=d, symbols='BTC/USDT', commission=True), ConfigError, 'commission must be a number of basis points'),
             (dict(data=d, symbols='BTC/USDT', lot_size={'ETH/USDT': 0.01}), ConfigError, "lot_size given for ['ETH/USDT']")]
    for kw, exc, msg in cases:
        data = kw.pop('data')
        with pytest.raises(exc, match=msg.replace('[', r'\[').replace(']', r'\]').replace('(', r'\(')): backtest('sma_cross', data, **kw)
    sub = backtest('sma_cross', both, symbols=['ETH/USDT'])
    assert sub.symbols == ['ETH/USDT']                                                # a subset of a dict is honoured
    assert set(backtest('sma_cross', d, symbols='BTC/USDT', lot_size=0.01).config['lot_size']) == {'BTC/USDT'}

def test_a_store_keeps_the_asset_type_it_was_given(tmp_path, eth_1h):
    st = Store(f"sqlite:///{tmp_path}/s.sqlite")
    st.write_bars(eth_1h.loc['2023-01'], 'ETHUSDT', '1h', venue='binance', asset_type='crypto')   # no slash: would look like a stock
    res = backtest('sma_cross', st, symbols=['ETHUSDT'], timeframe='1h')
    assert res.asset_types == {'ETHUSDT': 'crypto'} and res.metrics['periods_per_year'] == 8760
    assert (res.trades.quantity % 1 != 0).any()                                      # fractional, as crypto is
    st.close()

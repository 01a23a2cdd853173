"""On an SMA crossover with next-open fills and zero costs, QuantSage's trades and final equity equal backtrader's and
backtesting.py's.

All three engines are given the same rule (long when d = SMA(fast) - SMA(slow) goes from <= 0 to > 0, flat when it goes
from >= 0 to < 0, one unit) and the same indicator values (QuantSage's streaming SMAs, computed once), so that what is
compared is the engines: when a signal becomes an order, at which bar and price it fills, how the books and the equity
follow. (Three independent SMA implementations round differently in the last bit, and on real data a near-tie then
flips a crossover here and there; that would test float summation, not the engines.)

backtrader keeps cash by notional like QuantSage, so its final value is equal to the last bit. backtesting.py books
equity as cash plus accumulated trade P&L, a different order of the same additions: equal to 1e-12 relative."""
import warnings
import numpy as np, pandas as pd, pytest
from quantsage.engine.backtest import backtest
from quantsage.indicators import SMA

FAST, SLOW, CASH, QTY = 10, 30, 10_000_000., 1.0

def _stream(close, n):
    s = SMA(n)
    return np.array([s.update(x) for x in close.tolist()])

@pytest.fixture(scope='module', params=['BTC/USDT 1h', 'ETH/USDT 1m'])
def run(request, shared):
    from quantsage.data.catalog import load_bars
    sym, tf = request.param.split()
    df = load_bars(sym, tf, f"file:{shared}").iloc[:30_000]
    qs = backtest('sma_cross', df, symbols=sym, commission=0, slippage=0, quantity=QTY, initial_cash=CASH, fast=FAST, slow=SLOW)
    d = _stream(df.close.to_numpy(), FAST) - _stream(df.close.to_numpy(), SLOW)
    naive = df.copy(); naive.index = naive.index.tz_localize(None)
    return qs, d, naive

def test_backtrader_agrees(run):
    import backtrader as bt
    qs, d, df = run
    class Cross(bt.Strategy):
        def __init__(self): self.fills = []
        def notify_order(self, order):
            if order.status == order.Completed: self.fills.append((bt.num2date(order.executed.dt), order.executed.price, order.executed.size))
        def next(self):
            i = len(self) - 1
            now, prev = d[i], (d[i - 1] if i else np.nan)
            if now > 0 >= prev and not self.position: self.buy(size=QTY)
            elif now < 0 <= prev and self.position: self.close()
    cer = bt.Cerebro(stdstats=False)
    cer.adddata(bt.feeds.PandasData(dataname=df)); cer.addstrategy(Cross)
    cer.broker.setcash(CASH); cer.broker.setcommission(commission=0.0)
    fills = cer.run()[0].fills
    t = qs.trades
    assert len(t) > 100
    entries = [(ts, p) for ts, p, sz in fills if sz > 0]; exits = [(ts, p) for ts, p, sz in fills if sz < 0]
    assert [p for _, p in entries[:len(t)]] == t.entry_price.tolist()
    assert [p for _, p in exits[:len(t)]] == t.exit_price.tolist()
    assert [ts for ts, _ in entries[:len(t)]] == t.entry_time.dt.tz_localize(None).tolist()     # the same bars (both stamped at close)
    assert [ts for ts, _ in exits[:len(t)]] == t.exit_time.dt.tz_localize(None).tolist()
    assert cer.broker.getvalue() == qs.metrics['final_equity']

def test_backtesting_py_agrees(run):
    from backtesting import Backtest, Strategy
    qs, d, df = run
    class Cross(Strategy):
        def init(self): self.d = self.I(lambda: d, name='d')
        def next(self):
            now, prev = self.d[-1], (self.d[-2] if len(self.d) > 1 else np.nan)
            if now > 0 >= prev and not self.position: self.buy(size=QTY)
            elif now < 0 <= prev and self.position: self.position.close()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        stats = Backtest(df.rename(columns=str.capitalize), Cross, cash=CASH, commission=0, finalize_trades=False).run()
    theirs, t = stats._trades, qs.trades
    assert len(theirs) == len(t) > 100
    assert theirs.EntryPrice.tolist() == t.entry_price.tolist()
    assert theirs.ExitPrice.tolist() == t.exit_price.tolist()
    assert theirs.Size.tolist() == t.quantity.tolist()
    assert theirs.PnL.tolist() == t.pnl.tolist()
    assert list(theirs.EntryTime) == t.entry_time.dt.tz_localize(None).tolist()
    assert list(theirs.ExitTime) == t.exit_time.dt.tz_localize(None).tolist()
    assert stats['Equity Final [$]'] == pytest.approx(qs.metrics['final_equity'], rel=1e-12, abs=0)

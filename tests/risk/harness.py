"""Shared building blocks of the risk tests: crafted bar frames, a scripted strategy, and a kernel wired the way
`backtest()` wires it, with room for test subscribers before (or after) the kernel's own."""
from __future__ import annotations
import itertools, math, types
import numpy as np, pandas as pd
from quantsage.bus import EventBus
from quantsage.engine.backtest import Kernel, SimClock, ReplayFeed, ReplayView, prepare_data
from quantsage.events import AssetType, MarketDataEvent, Side
from quantsage.execution.costs import CostModel, BpsCommission, NoCommission, NoSlippage
from quantsage.execution.simulated import SimulatedBroker
from quantsage.portfolio import Portfolio, PercentOfEquity
from quantsage.risk import RiskManager
from quantsage.strategies import Strategy

H = 3_600_000_000_000                      # one hour in ns
D = 24*H
REL = 1e-9                                 # float rounding tolerance of the limit properties


def ns(t) -> int: return pd.Timestamp(t).value


def frame(closes, opens=None, highs=None, lows=None, volume=1e9, start='2024-01-01 01:00', freq='h', symbol=None,
          asset_type=None) -> pd.DataFrame:
    "Bars stamped at their close (UTC); opens default to the previous close, highs/lows to the bar's extremes."
    c = np.asarray(closes, dtype='float64')
    o = np.r_[c[0], c[:-1]] if opens is None else np.asarray(opens, dtype='float64')
    h = np.maximum(o, c) if highs is None else np.maximum(np.asarray(highs, dtype='float64'), np.maximum(o, c))
    l = np.minimum(o, c) if lows is None else np.minimum(np.asarray(lows, dtype='float64'), np.minimum(o, c))
    v = np.broadcast_to(np.asarray(volume, dtype='float64'), c.shape).copy()
    idx = pd.date_range(start, periods=len(c), freq=freq, tz='UTC', name='ts') if isinstance(start, (str, pd.Timestamp)) else start
    f = pd.DataFrame({'open': o, 'high': h, 'low': l, 'close': c, 'volume': v}, index=idx)
    if symbol: f.attrs['symbol'] = symbol
    if asset_type: f.attrs['asset_type'] = asset_type
    return f


def stock_sessions(n, start='2024-01-02') -> pd.DatetimeIndex:
    "Close stamps (21:00 UTC in winter) of `n` XNYS sessions: daily stock bars as the shared data has them."
    from quantsage.data.bars import exchange_calendar
    cal = exchange_calendar('XNYS')
    closes = pd.DatetimeIndex(cal.closes.to_numpy()).tz_localize(None).tz_localize('UTC') if pd.DatetimeIndex(cal.closes).tz is None \
        else pd.DatetimeIndex(cal.closes).tz_convert('UTC')
    closes = closes[closes >= pd.Timestamp(start, tz='UTC')][:n]
    return pd.DatetimeIndex(closes, name='ts')


class Scripted(Strategy):
    "Emits `plan[(symbol, k)]` ('long' | 'short' | 'exit', or (direction, confidence)) on the k-th bar (0-based) of each symbol."
    def __init__(self, plan: dict, strategy_id: str = 'scripted'):
        super().__init__(strategy_id)
        self.plan = dict(plan)
    def init_symbol(self, symbol): return types.SimpleNamespace(k=-1)
    def on_market_data(self, ev):
        st = self.state(ev.symbol); st.k += 1
        what = self.plan.get((ev.symbol, st.k))
        if what is None: return None
        d, conf = (what, 1.0) if isinstance(what, str) else what
        return {'long': self.long, 'short': self.short, 'exit': self.exit}[d](ev, conf)


def costs(commission_bps=0., max_volume_share=None) -> dict:
    c = BpsCommission(commission_bps, commission_bps) if commission_bps else NoCommission()
    return {a: CostModel(c, NoSlippage(), max_volume_share) for a in AssetType}


class Rig:
    """A kernel built as `backtest()` builds one (portfolio with the risk manager, simulated broker with the account,
    replay view), with `before` subscriptions made ahead of the kernel's own and `risk_state` passed through."""
    def __init__(self, strategy, data: dict, *, risk=None, cash=100_000., sizer=None, cost=None, instruments=None,
                 lot_size=None, allow_short=True, risk_state=None, before=(), asset_type=None):
        self.series, _ = prepare_data(data, asset_type=asset_type, check_data=False)
        self.clock = SimClock()
        self.bus = EventBus(history=0, on_error='raise', clock=self.clock)
        seq = itertools.count(1)
        self.risk = risk if risk is not None else RiskManager()
        pf = self.pf = Portfolio(cash, sizer or PercentOfEquity(0.95), allow_short, lot_size, self.risk,
                                 order_id=lambda: f"o{next(seq):07d}")
        for s in self.series: pf.asset_types[s.symbol] = s.asset_type
        pf.instruments = dict(instruments or {})
        self.broker = SimulatedBroker(cost if cost is not None else costs(), self.bus.publish, account=pf,
                                      lot_size=lambda s: pf.instrument(s).lot_size, clock=self.clock)
        for topic, h in before: self.bus.subscribe(topic, h)
        self.view = ReplayView(self.series, self.clock, pf)
        self.strategy = strategy
        strategy.reset()
        self.kernel = Kernel(strategy, pf, self.broker, self.bus, self.clock, self.view, risk_state=risk_state)
        self.feed = ReplayFeed(self.series)
        self.log = self.kernel.recorder.log

    def run(self, loop='replay'):
        if loop == 'replay': self.kernel.replay(self.feed)
        else:
            for cols, n in self.feed.chunks():
                for row in zip(*cols[:8], cols[7], *cols[8:]): self.kernel.step(MarketDataEvent(*row))
        return self

    def of(self, cls): return [e for e in self.log if e.__class__ is cls]


def signed(fill) -> float: return fill.quantity if fill.side is Side.BUY else -fill.quantity


def close_enough(a, b, rel=REL, abs_=1e-9) -> bool:
    "a <= b up to float rounding."
    return a <= b + rel*max(abs(a), abs(b)) + abs_

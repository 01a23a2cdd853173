"""Strategies stop and resume exactly: get_state() mid-stream, set_state() on a fresh instance, and the rest of the stream
gives the same signals as an uninterrupted run. The state is plain JSON (the live runtime keeps it in the store).
Also: no strategy signals before its warm-up is over."""
import json, math
import numpy as np, pytest
from quantsage.events import MarketDataEvent, AssetType
from quantsage.strategies import get_strategy, MarketView
from quantsage.core import ConfigError

class FlatView(MarketView):
    "A view for driving a strategy by hand: nothing held, the clock at the current bar."
    def __init__(self): self.t = 0
    def history(self, symbol, field='close', n=None): raise AssertionError('not used by the built-in strategies')
    def position(self, symbol): return 0.
    def entry_price(self, symbol): return math.nan
    def now(self): return self.t

def events(df, sym):
    out = []
    for t, o, h, l, c, v in zip(df.index.asi8, df.open, df.high, df.low, df.close, df.volume):
        out.append(MarketDataEvent(sym, '1h', o, h, l, c, v, int(t), int(t), AssetType.CRYPTO))
    return out

def drive(strat, evs, view):
    got = []
    for ev in evs:
        view.t = ev.ts_event
        s = strat.step(ev)
        if s is not None: got.append((s.ts_event, s.direction.value, s.reason))
    return got

@pytest.mark.parametrize('name', ['sma_cross', 'mean_reversion', 'momentum'])
def test_state_round_trip_continues_exactly(name, btc_1h, eth_1h):
    evs = events(btc_1h.loc['2023-01':'2023-06'], 'BTC/USDT') + events(eth_1h.loc['2023-01':'2023-06'], 'ETH/USDT')
    evs.sort(key=lambda e: e.ts_event)
    cls = get_strategy(name)
    v = FlatView(); a = cls().bind(v); whole = drive(a, evs, v)
    assert len(whole) > 10, "the stream must produce signals for the comparison to mean something"
    half = len(evs)//2
    v1 = FlatView(); first = cls().bind(v1); got = drive(first, evs[:half], v1)
    saved = json.loads(json.dumps(first.get_state()))                      # survives JSON, as in the store
    v2 = FlatView(); second = cls().bind(v2).set_state(saved)
    got += drive(second, evs[half:], v2)
    assert got == whole

def test_state_from_another_strategy_or_parameters_is_refused():
    a = get_strategy('sma_cross')(fast=5, slow=20)
    with pytest.raises(ConfigError, match='saved with parameters'):
        get_strategy('sma_cross')(fast=6, slow=20).set_state(a.get_state())
    with pytest.raises(ConfigError, match="state saved by 'sma_cross' cannot be restored"):
        get_strategy('momentum')().set_state(a.get_state())

@pytest.mark.parametrize('name', ['sma_cross', 'mean_reversion', 'momentum'])
def test_no_signal_during_warm_up(name, btc_1h):
    evs = events(btc_1h.loc['2022'], 'BTC/USDT')
    strat = get_strategy(name)(); v = FlatView(); strat.bind(v)
    first = None
    for i, ev in enumerate(evs):
        v.t = ev.ts_event
        if strat.step(ev) is not None: first = i; break
    assert first is not None and first >= strat.warmup_bars - 1

"""The simulated broker's fill rules, for any bars and orders hypothesis can think of.

For every order type and side: a fill lands inside the bar's range (before slippage), a limit order never fills worse
than its limit, a stop never fills before its trigger is reached, partial fills never exceed the order or the
participation cap, nothing fills on the bar that was current when the order was placed, and the working quantity
always equals what is left."""
import math
import pandas as pd
from hypothesis import given, settings, strategies as st, assume
from quantsage.events import MarketDataEvent, OrderEvent, Side, OrderType, TimeInForce
from quantsage.execution.costs import CostModel, NoCommission, NoSlippage
from quantsage.execution.simulated import SimulatedBroker

T0 = pd.Timestamp('2024-01-01', tz='UTC').value
H = 3_600_000_000_000

@st.composite
def bar_path(draw, n=6):
    out, prev = [], draw(st.floats(50, 150))
    for i in range(n):
        o = prev*draw(st.floats(0.9, 1.1)); c = o*draw(st.floats(0.9, 1.1))
        h = max(o, c)*draw(st.floats(1.0, 1.05)); l = min(o, c)*draw(st.floats(0.95, 1.0))
        v = draw(st.floats(0.0, 50.0))
        out.append(MarketDataEvent('X', '1h', o, h, l, c, v, T0 + (i + 1)*H, T0 + (i + 1)*H))
        prev = c
    return out

@st.composite
def order(draw):
    side = draw(st.sampled_from([Side.BUY, Side.SELL])); t = draw(st.sampled_from(list(OrderType)))
    p1, p2 = draw(st.floats(40, 170)), draw(st.floats(40, 170))
    limit = p1 if t in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    stop = p2 if t in (OrderType.STOP, OrderType.STOP_LIMIT) else None
    tif = draw(st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK]))
    return OrderEvent('qs-1', 'X', side, draw(st.floats(0.5, 20)), t, T0, T0, limit, stop, tif)

@settings(max_examples=400, deadline=None)
@given(bar_path(), order(), st.sampled_from([None, 0.1, 0.5]))
def test_fills_obey_the_documented_rules(bars, o, cap):
    fills = []
    br = SimulatedBroker({'crypto': CostModel(NoCommission(), NoSlippage(), cap)}, publish=fills.append, lot_size=lambda s: 0.)
    br.on_order(o)
    stop_hit = False
    for b in bars:
        before = len(fills)
        br.on_bar(b)
        for f in fills[before:]:
            assert f.ts_event == b.ts_event and f.ts_event > o.ts_event          # never on the bar current at submission
            assert b.low - 1e-9 <= f.price <= b.high + 1e-9                     # inside the bar (no slippage here)
            if o.limit_price is not None:
                assert (f.price <= o.limit_price + 1e-12) if o.side is Side.BUY else (f.price >= o.limit_price - 1e-12)
            if o.order_type is OrderType.STOP and not stop_hit:          # the bar that triggers the stop
                assert (b.high >= o.stop_price) if o.side is Side.BUY else (b.low <= o.stop_price)
                assert (f.price >= min(o.stop_price, b.open) - 1e-12) if o.side is Side.BUY else (f.price <= max(o.stop_price, b.open) + 1e-12)
            elif o.order_type is OrderType.STOP:
                assert f.price == b.open                                   # the rest of a triggered stop: a market order
            if cap is not None: assert f.quantity <= cap*b.volume + 1e-9
        if o.order_type is OrderType.STOP and ((b.high >= o.stop_price) if o.side is Side.BUY else (b.low <= o.stop_price)):
            stop_hit = True                                                # triggered from here on, filled or not (cap, volume 0)
        filled = sum(f.quantity for f in fills)
        assert filled <= o.quantity + 1e-9
        left = o.quantity - filled if br.status['qs-1'] in ('new', 'partially_filled') else 0.
        assert math.isclose(abs(br.open_quantity('X')), left, abs_tol=1e-9)
    if o.time_in_force is TimeInForce.FOK and fills:
        assert math.isclose(sum(f.quantity for f in fills), o.quantity)               # all or nothing
    if o.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
        assert br.n_working == 0 and len({f.ts_event for f in fills}) <= 1            # one bar only

@settings(max_examples=200, deadline=None)
@given(bar_path(n=3), st.floats(0.5, 20), st.sampled_from([Side.BUY, Side.SELL]))
def test_market_orders_fill_at_the_next_open(bars, qty, side):
    fills = []
    br = SimulatedBroker({'crypto': CostModel(NoCommission(), NoSlippage())}, publish=fills.append)
    br.on_order(OrderEvent('qs-2', 'X', side, qty, OrderType.MARKET, T0, T0))
    for b in bars: br.on_bar(b)
    assert [(f.price, f.quantity, f.ts_event) for f in fills] == [(bars[0].open, qty, bars[0].ts_event)]

"""Each rule and each layer at and around its limit; the REDUCING and HALTED gates; the daily-loss and drawdown breakers
at exactly their limit and just short of it; the new trading day (UTC and the XNYS session); snapshot and restore;
resume; and the trip cancelling working entries at a real SimulatedBroker while protective orders stay."""
import itertools, json, math
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from quantsage.core import ConfigError
from quantsage.events import (AssetType, FillEvent, Liquidity, MarketDataEvent, OrderEvent, OrderType, RiskAlertEvent,
                              RiskLayer, Severity, Side, SystemEvent, SystemKind, TimeInForce)
from quantsage.execution.simulated import SimulatedBroker
from quantsage.limits import (CorrelationLimit, MaxInvested, MaxPositionPct, MaxSymbolExposure, risk_from_config, room)
from quantsage.portfolio import Instrument, Portfolio
from quantsage.risk import Breakers, RiskManager, TradingState, reducing_quantity
from .harness import H, D, ns, costs

CRYPTO, STOCK = AssetType.CRYPTO, AssetType.STOCK
_ids = itertools.count(1)


def book(cash=10_000., marks=None, checks=(), breakers=None, asset=CRYPTO, broker=False, instruments=None):
    "A portfolio at `marks` with a risk manager (alerts collected in `seen`), optionally with a real broker as its orders."
    seen = []
    rm = RiskManager(list(checks), breakers, publish=seen.append, clock=lambda: 0)
    pf = Portfolio(cash, risk=rm, order_id=lambda: f"p{next(_ids)}", instruments=instruments)
    for s, px in (marks or {'X': 100.}).items():
        pf.marks[s] = px
        pf.asset_types[s] = asset[s] if isinstance(asset, dict) else asset
    if broker:
        pf.orders = SimulatedBroker(costs(), seen.append, account=pf, lot_size=lambda s: pf.instrument(s).lot_size)
    rm.bind(pf)
    return pf, rm, seen


def order(side, q, sym='X', ts=0, strategy='s', reduce_only=False, otype='market', limit=None, stop=None, asset=CRYPTO):
    return OrderEvent(f"c{next(_ids)}", sym, Side(side), float(q), OrderType(otype), ts, ts, limit, stop, TimeInForce.GTC,
                      strategy, asset, reduce_only)


def fill(pf, rm, side, q, px, sym='X', ts=H, strategy='s', fee=0., asset=CRYPTO):
    "Book a fill as the kernel does: portfolio first, then the breakers."
    f = FillEvent(f"f{next(_ids)}", f"f{next(_ids)}-1", sym, Side(side), float(q), float(px), float(fee), ts, ts,
                  Liquidity.TAKER, 'USD', strategy, asset)
    pf.on_fill(f)
    if rm is not None: rm.on_fill(f)
    return f


def bar(pf, rm, px, ts, sym='X', asset=CRYPTO):
    "A held symbol's bar as the kernel hands it on: the trading day settled, the price marked, then the breakers."
    rm.roll(ts)
    pf.marks[sym] = px
    rm.on_bar(MarketDataEvent(sym, '1h', px, px, px, px, 1., ts, ts, asset))
    return rm.state


def alerts(seen): return [e for e in seen if isinstance(e, RiskAlertEvent)]


# -- layer 1: the position --------------------------------------------------------------------------------------

def test_position_limit_exactly_at_10pct_approves_without_alert():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10)])
    o = order('buy', 10)                                       # 10 x 100 = 1,000 = 10% of 10,000
    assert rm.check(o, pf) == o
    assert alerts(seen) == [] and rm.decisions == {'approved': 1, 'resized': 0, 'rejected': 0}


def test_position_limit_just_above_resizes_with_the_values_and_the_order():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10)])
    o = order('buy', 10.001)
    got = rm.check(o, pf)
    assert got.quantity == pytest.approx(10., rel=1e-12) and got.client_order_id == o.client_order_id
    [a] = alerts(seen)
    assert (a.layer, a.rule, a.severity, a.symbol, a.client_order_id) == (RiskLayer.POSITION, 'max_position_pct', Severity.WARNING, 'X', o.client_order_id)
    d = dict(a.data)
    assert d['requested'] == 10.001 and d['allowed'] == pytest.approx(10.) and d['quantity_after'] == got.quantity
    assert (d['price'], d['equity'], d['limit_pct']) == (100., 10_000., 0.10)
    assert dict(d['order']) == {'side': 'buy', 'quantity': 10.001, 'type': 'market', 'limit_price': None, 'stop_price': None,
                                'reduce_only': False}
    assert 'resized 10.001 -> 10' in a.message
    assert rm.decisions == {'approved': 0, 'resized': 1, 'rejected': 0}


def test_position_limit_with_nothing_left_rejects():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10)])
    fill(pf, None, 'buy', 10, 100.)                            # already at 10%
    assert rm.check(order('buy', 1), pf) is None
    [a] = alerts(seen)
    assert a.rule == 'max_position_pct' and 'nothing of the order fits' in a.message and dict(a.data['order'])['quantity'] == 1.
    assert rm.decisions['rejected'] == 1
    assert rm.check(order('sell', 4), pf).quantity == 4.       # reducing always fits


def test_position_limit_is_per_strategy_and_counts_shorts():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10)], asset=STOCK)
    fill(pf, None, 'buy', 10, 100., strategy='a', asset=STOCK)
    assert rm.check(order('buy', 10, strategy='b', asset=STOCK), pf).quantity == 10.   # b holds nothing of its own
    assert rm.check(order('sell', 10.5, strategy='c', asset=STOCK), pf).quantity == pytest.approx(10.)   # a short is capped too
    # a flip: closes a's 10, opens at most 10 short
    assert rm.check(order('sell', 25, strategy='a', asset=STOCK), pf).quantity == pytest.approx(20.)


# -- layer 2: the symbol across strategies ------------------------------------------------------------------------

def test_symbol_limit_15pct_across_strategies_at_and_around():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10), MaxSymbolExposure(0.15)])
    fill(pf, None, 'buy', 10, 100., strategy='a')              # strategy a: 10%
    assert rm.check(order('buy', 5, strategy='b'), pf).quantity == 5.            # 15% exactly: approved
    assert alerts(seen) == []
    got = rm.check(order('buy', 5.5, strategy='b'), pf)
    assert got.quantity == pytest.approx(5.)
    [a] = alerts(seen)
    assert (a.layer, a.rule) == (RiskLayer.SYMBOL, 'max_symbol_exposure_pct') and a.data['held'] == 10.
    fill(pf, None, 'buy', 5, 100., strategy='b')
    assert rm.check(order('buy', 1, strategy='c'), pf) is None and alerts(seen)[-1].rule == 'max_symbol_exposure_pct'


# -- layer 3: the book --------------------------------------------------------------------------------------------

def test_max_invested_80pct_gross_at_and_around():
    pf, rm, seen = book(marks={'X': 100., 'Y': 50., 'Z': 20.}, checks=[MaxInvested(0.80)], asset=STOCK)
    fill(pf, None, 'buy', 80, 50., sym='Y', asset=STOCK)                        # 4,000 long
    fill(pf, None, 'sell', 100, 20., sym='Z', asset=STOCK)                      # 2,000 short: gross 6,000
    assert pf.equity() == 10_000.
    assert rm.check(order('buy', 20, asset=STOCK), pf).quantity == 20.          # 8,000 gross: exactly 80%
    got = rm.check(order('buy', 20.5, asset=STOCK), pf)
    assert got.quantity == pytest.approx(20.)
    [a] = alerts(seen)
    assert (a.layer, a.rule) == (RiskLayer.PORTFOLIO, 'max_invested_pct') and a.data['other_exposure'] == pytest.approx(6_000.)
    fill(pf, None, 'buy', 20, 100., asset=STOCK)
    assert rm.check(order('buy', 1, sym='Y', asset=STOCK), pf) is None          # nothing fits any more
    assert rm.check(order('buy', 10, sym='Z', asset=STOCK), pf).quantity == 10.  # covering a short lowers gross: passes


def test_working_entries_count_toward_the_limits():
    pf, rm, seen = book(marks={'X': 100., 'Y': 100.}, checks=[MaxPositionPct(0.10), MaxInvested(0.15)], broker=True)
    pf.orders.on_order(order('buy', 6, sym='X'))                                # 6 working in X, 0 held
    assert rm.check(order('buy', 6, sym='X'), pf).quantity == pytest.approx(4.)  # 10 units in all
    assert rm.check(order('buy', 12, sym='Y'), pf).quantity == pytest.approx(9.)  # 1,500 - 600 working elsewhere


# -- the layers together, in order ----------------------------------------------------------------------------------

def test_default_layers_resize_in_layer_order_and_alert_once_per_binding_rule():
    rm = risk_from_config()
    assert [(c.layer, c.rule) for c in rm.checks] == [(RiskLayer.POSITION, 'max_position_pct'), (RiskLayer.SYMBOL, 'max_symbol_exposure_pct'),
                                                       (RiskLayer.PORTFOLIO, 'max_invested_pct'), (RiskLayer.PORTFOLIO, 'correlation_limit')]
    seen = []
    pf = Portfolio(100_000., risk=rm, order_id=lambda: f"p{next(_ids)}")
    for s in 'ABCDEFGHIJ': pf.marks[s] = 100.; pf.asset_types[s] = STOCK
    rm.publish = seen.append; rm.bind(pf)
    for s in 'ABCDEFG': fill(pf, None, 'buy', 100, 100., sym=s, strategy='s', asset=STOCK)     # 7 x 10% = 70%
    got = rm.check(order('buy', 500, sym='H', asset=STOCK), pf)                  # position layer first: 100; then the book: 10% left
    assert got.quantity == 100.
    assert [a.rule for a in alerts(seen)] == ['max_position_pct']
    fill(pf, None, 'buy', 100, 100., sym='H', asset=STOCK)                        # 80% gross
    assert rm.check(order('buy', 50, sym='I', asset=STOCK), pf) is None
    assert [a.rule for a in alerts(seen)][-1] == 'max_invested_pct'


# -- lots and minimums ----------------------------------------------------------------------------------------------

def test_lot_rounding_floors_below_the_limit():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10)], instruments={'X': Instrument('X', lot_size=0.3)})
    got = rm.check(order('buy', 50), pf)
    assert got.quantity == pytest.approx(9.9) and got.quantity*100. <= 1_000.   # 33 lots; 34 would be 10.2 > the 10 allowed
    assert alerts(seen)[-1].data['quantity_after'] == got.quantity


def test_minimum_notional_and_quantity_reject_instead_of_rounding_up():
    pf, rm, seen = book(cash=500., checks=[MaxPositionPct(0.10)],
                        instruments={'X': Instrument('X', lot_size=0.01, min_notional=100.)})
    assert rm.check(order('buy', 3), pf) is None                                 # 0.5 units = 50 fit; the minimum is 100 of notional
    assert 'nothing of the order fits' in alerts(seen)[-1].message and alerts(seen)[-1].data['allowed'] == pytest.approx(0.5)
    pf2, rm2, seen2 = book(cash=500., checks=[MaxPositionPct(0.10)], instruments={'X': Instrument('X', lot_size=0.1, min_quantity=1.)})
    assert rm2.check(order('buy', 3), pf2) is None                                # 0.5 units fit; the minimum is 1 unit
    assert rm2.decisions['rejected'] == 1


@settings(max_examples=120, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(equity=st.floats(100., 1e7), price=st.floats(0.01, 1e5), pct=st.floats(0.01, 1.0), lot=st.sampled_from([0., 1e-5, 0.001, 0.1, 1., 7.]),
       ask=st.floats(0.5, 50.), held_frac=st.floats(0., 1.2))
def test_resized_quantity_is_floored_to_lots_and_never_above_the_cap(equity, price, pct, lot, ask, held_frac):
    pf, rm, seen = book(cash=equity, marks={'X': price}, checks=[MaxPositionPct(pct)], instruments={'X': Instrument('X', lot_size=lot)})
    cap = pct*equity/price
    held = cap*held_frac
    if held > 0: fill(pf, None, 'buy', held, price)                                 # equity unchanged (no fee)
    eq = pf.equity()
    got = rm.check(order('buy', cap*ask), pf)
    allowed = max(pct*eq/price - held, 0.)
    if got is None:
        assert allowed < lot*(1 + 1e-6) + 1e-9*cap                                 # nothing (not even one lot) fitted
        assert alerts(seen)[-1].rule == 'max_position_pct'
    else:
        assert (held + got.quantity)*price <= pct*eq*(1 + 1e-9) + 1e-9*lot*price     # never above the limit (floored)
        if got.quantity < cap*ask:                                                   # resized: the most whole lots that fit
            assert got.quantity >= allowed - lot - 1e-9*max(cap, 1.)
            if lot: assert abs(got.quantity/lot - round(got.quantity/lot)) < 1e-6 + 1e-12*got.quantity/lot   # whole lots, to float precision


# -- correlation ----------------------------------------------------------------------------------------------------

class ArrayView:
    def __init__(self, closes, times): self.c, self.t = closes, times
    def history(self, s, field='close', n=None): return self.c[s][-n:] if n else self.c[s]
    def times(self, s, n=None): return self.t[s][-n:] if n else self.t[s]


class FixedRho(CorrelationLimit):
    "The rule with a given correlation (to test the boundary exactly)."
    def __init__(self, rho, **kw): super().__init__(**kw); self.rho = rho
    def correlation(self, a, b, view): return self.rho


def _corr_book(check, asset=CRYPTO):
    pf, rm, seen = book(marks={'X': 100., 'Y': 50.}, checks=[check], asset=asset)
    fill(pf, None, 'buy', 20, 50., sym='Y', asset=asset)                         # long Y
    return pf, rm, seen


def test_correlation_limit_at_and_just_above_0_7():
    pf, rm, seen = _corr_book(FixedRho(0.70, limit=0.7))
    pf.view = object()
    assert rm.check(order('buy', 10, asset=STOCK), pf).quantity == 10.           # exactly at the limit: approved
    pf, rm, seen = _corr_book(FixedRho(0.85, limit=0.7))
    pf.view = object()
    got = rm.check(order('buy', 10, asset=STOCK), pf)
    assert got.quantity == pytest.approx(10*(1 - 0.85)/(1 - 0.7))                 # scaled by (1 - rho)/(1 - limit) = 0.5
    [a] = alerts(seen)
    assert (a.layer, a.rule, a.data['with'], a.data['action']) == (RiskLayer.PORTFOLIO, 'correlation_limit', 'Y', 'reduce')
    assert a.data['correlation'] == pytest.approx(0.85)


def test_correlation_limit_on_real_returns_reduce_and_deny():
    rng = np.random.default_rng(3)
    base = np.cumsum(rng.normal(0, .01, 200))
    t = np.arange(200)*H
    closes = {'X': 100*np.exp(base + rng.normal(0, .002, 200)), 'Y': 50*np.exp(base)}
    pf, rm, seen = _corr_book(CorrelationLimit(0.7, 60, 'reduce'))
    pf.view = ArrayView(closes, {'X': t, 'Y': t})
    rho = np.corrcoef(np.diff(np.log(closes['X'][-61:])), np.diff(np.log(closes['Y'][-61:])))[0, 1]
    assert rho > 0.9
    assert rm.check(order('buy', 10, asset=STOCK), pf).quantity == pytest.approx(10*(1 - rho)/(1 - 0.7), rel=1e-9)
    pf, rm, seen = _corr_book(CorrelationLimit(0.7, 60, 'deny'))
    pf.view = ArrayView(closes, {'X': t, 'Y': t})
    assert rm.check(order('buy', 10, asset=STOCK), pf) is None                     # the entry is denied
    assert alerts(seen)[-1].rule == 'correlation_limit'
    assert rm.check(order('sell', 10, asset=STOCK), pf).quantity == 10.              # a short X against long Y is a hedge: not bound


def test_correlation_deny_keeps_the_reducing_part_of_a_flip():
    pf, rm, seen = _corr_book(FixedRho(0.95, limit=0.7, action='deny'))
    pf.view = object()
    fill(pf, None, 'sell', 4, 100., sym='X', asset=STOCK)                           # short 4 X, long Y, X and Y move together
    got = rm.check(order('buy', 10, asset=STOCK), pf)                               # 4 cover, 6 open long: the 6 are denied
    assert got.quantity == 4.
    assert rm.check(order('buy', 3, asset=STOCK), pf).quantity == 3.                # only covering: nothing to deny


def test_correlation_is_direction_signed():
    pf, rm, seen = _corr_book(FixedRho(-0.9, limit=0.7))
    pf.view = object()
    assert rm.check(order('buy', 10, asset=STOCK), pf).quantity == 10.              # long X, long Y, opposite moves: a hedge
    got = rm.check(order('sell', 10, asset=STOCK), pf)                              # short X while long Y: the same bet
    assert got.quantity == pytest.approx(10*(1 - 0.9)/(1 - 0.7))


# -- the trading-state gate -------------------------------------------------------------------------------------------

def _tripped(state, checks=()):
    pf, rm, seen = book(checks=checks, breakers=Breakers(0.05, 0.20, calendar=None), asset=STOCK)
    fill(pf, rm, 'buy', 50, 100., asset=STOCK)                                      # cash 5,000 + 50 x price
    bar(pf, rm, 90. if state is TradingState.REDUCING else 60., 2*H, asset=STOCK)
    assert rm.state is state
    return pf, rm, seen


def test_reducing_passes_only_the_reducing_part():
    pf, rm, seen = _tripped(TradingState.REDUCING, checks=[MaxPositionPct(0.10)])
    n = len(alerts(seen))
    assert rm.check(order('buy', 1, ts=3*H, asset=STOCK), pf) is None               # an entry: rejected
    a = alerts(seen)[-1]
    assert (a.layer, a.rule, a.data['state'], dict(a.data['order'])['side']) == (RiskLayer.SYSTEM, 'reducing', 'reducing', 'buy')
    ex = order('sell', 20, ts=3*H, asset=STOCK)
    got = rm.check(ex, pf)                                                          # an exit: passes whole
    assert (got.client_order_id, got.side, got.quantity) == (ex.client_order_id, Side.SELL, 20.)
    flip = rm.check(order('sell', 80, ts=3*H, asset=STOCK), pf)                     # a flip: cut to the 50 that close
    assert (flip.quantity, flip.reduce_only) == (50., True)
    a = alerts(seen)[-1]
    assert (a.rule, a.data['allowed'], dict(a.data['order'])['quantity']) == ('reducing', 50., 80.)
    stop = order('sell', 50, ts=3*H, otype='stop', stop=80., reduce_only=True, asset=STOCK)
    assert rm.check(stop, pf) == stop                                               # a protective stop: passes as it is
    assert rm.check(order('sell', 5, sym='Y', ts=3*H, asset=STOCK), pf) is None      # a new short elsewhere: an entry


def test_halted_passes_nothing_but_cancels_still_work():
    pf, rm, seen = _tripped(TradingState.HALTED)
    pf.orders = SimulatedBroker(costs(), seen.append, account=pf)
    for o in (order('buy', 1, ts=3*H, asset=STOCK), order('sell', 50, ts=3*H, reduce_only=True, asset=STOCK),
              order('sell', 50, ts=3*H, otype='stop', stop=50., reduce_only=True, asset=STOCK)):
        assert rm.check(o, pf) is None
        a = alerts(seen)[-1]
        assert (a.layer, a.rule, a.client_order_id, a.data['state']) == (RiskLayer.SYSTEM, 'halted', o.client_order_id, 'halted')
    resting = order('sell', 50, ts=H, otype='stop', stop=50., reduce_only=True, asset=STOCK)
    pf.orders.on_order(resting)                                                     # was working before the halt
    assert pf.orders.cancel(resting.client_order_id) is True                       # a cancel is not an order: it goes through
    assert pf.orders.status[resting.client_order_id] == 'cancelled'


def test_reducing_quantity():
    assert reducing_quantity(order('sell', 5), 3.) == 3. and reducing_quantity(order('buy', 5), 3.) == 0.
    assert reducing_quantity(order('buy', 2), -3.) == 2. and reducing_quantity(order('sell', 2), 0.) == 0.


# -- breakers ---------------------------------------------------------------------------------------------------------

def _held(breakers, asset=CRYPTO):
    "Equity 10,000 = cash 5,000 + 50 units at 100."
    pf, rm, seen = book(breakers=breakers, asset=asset)
    fill(pf, rm, 'buy', 50, 100., asset=asset)
    assert pf.equity() == 10_000. and rm.peak == 10_000.
    return pf, rm, seen


def test_daily_loss_exactly_5pct_trips_reducing_on_that_bar():
    pf, rm, seen = _held(Breakers(0.05, 0.20, calendar=None))
    assert bar(pf, rm, 95., 2*H) is TradingState.ACTIVE                           # -2.5%
    assert bar(pf, rm, 90., 3*H) is TradingState.REDUCING                          # 9,500: exactly -5%
    assert (rm.rule, rm.since) == ('daily_loss', 3*H)
    a, s = seen[-2], seen[-1]
    assert (a.layer, a.rule, a.severity) == (RiskLayer.SYSTEM, 'daily_loss', Severity.CRITICAL)
    assert (a.data['equity'], a.data['day_start'], a.data['limit'], a.data['state'], a.data['previous']) == (9_500., 10_000., 0.05, 'reducing', 'active')
    assert isinstance(s, SystemEvent) and s.kind is SystemKind.RISK_STATE and s.data['state'] == 'reducing'
    assert rm.trips == [(3*H, 'daily_loss', 'reducing')]


def test_daily_loss_just_short_of_5pct_does_not_trip():
    pf, rm, seen = _held(Breakers(0.05, 0.20, calendar=None))
    assert bar(pf, rm, 90.0002, 3*H) is TradingState.ACTIVE                        # 9,500.01: -4.9999%
    assert alerts(seen) == [] and rm.trips == []


def test_daily_loss_counts_fees_and_trips_on_the_fill():
    pf, rm, seen = _held(Breakers(0.05, 0.20, calendar=None))
    bar(pf, rm, 91., 2*H)                                                          # 9,550
    fill(pf, rm, 'sell', 10, 91., ts=3*H, fee=50.)                                 # the fee takes it to 9,500
    assert rm.state is TradingState.REDUCING and rm.since == 3*H


def test_drawdown_exactly_20pct_halts_just_short_does_not():
    pf, rm, seen = _held(Breakers(None, 0.20, calendar=None))
    assert bar(pf, rm, 60.0002, 2*H) is TradingState.ACTIVE                       # 8,000.01
    assert bar(pf, rm, 60., 3*H) is TradingState.HALTED                            # 8,000: exactly -20%
    a = alerts(seen)[-1]
    assert (a.rule, a.severity, a.data['peak'], a.data['equity'], a.data['state']) == ('max_drawdown', Severity.CRITICAL, 10_000., 8_000., 'halted')
    assert bar(pf, rm, 60., 3*H + 3*D) is TradingState.HALTED                       # a new day does not end a halt


def test_drawdown_wins_over_the_daily_loss_in_one_event_and_follows_the_peak():
    pf, rm, seen = _held(Breakers(0.05, 0.20, calendar=None))
    assert bar(pf, rm, 60., 2*H) is TradingState.HALTED and rm.rule == 'max_drawdown'   # both breached at once
    pf, rm, seen = _held(Breakers(None, 0.20, calendar=None))
    bar(pf, rm, 120., 2*H)                                                         # 11,000: a new peak
    assert rm.peak == 11_000.
    assert bar(pf, rm, 76.0001, 3*H) is TradingState.ACTIVE                        # 8,800.005
    assert bar(pf, rm, 76., 4*H) is TradingState.HALTED                            # 8,800: -20% of 11,000


def test_reducing_then_deeper_halts():
    pf, rm, seen = _held(Breakers(0.05, 0.20, calendar=None))
    bar(pf, rm, 90., 2*H)
    assert rm.state is TradingState.REDUCING
    assert bar(pf, rm, 60., 3*H) is TradingState.HALTED
    assert [t[1:] for t in rm.trips] == [('daily_loss', 'reducing'), ('max_drawdown', 'halted')]


def test_new_utc_day_rearms_the_daily_loss():
    t0 = ns('2024-03-01 13:00Z')
    pf, rm, seen = book(breakers=Breakers(0.05, 0.20, calendar=None))
    fill(pf, rm, 'buy', 50, 100., ts=t0 - H)
    assert bar(pf, rm, 90., t0) is TradingState.REDUCING
    assert rm.check(order('buy', 1, ts=ns('2024-03-01 23:59:59Z')), pf) is None    # the rest of the day: no entries
    assert bar(pf, rm, 90., ns('2024-03-02 00:00Z')) is TradingState.REDUCING     # the 23:00-24:00 bar is still that day
    assert bar(pf, rm, 89., ns('2024-03-02 01:00Z')) is TradingState.ACTIVE      # a new day
    assert rm.day_start == 9_500.                                                  # the equity the day began with
    assert rm.trips[-1][1:] == ('daily_loss', 'active')
    assert rm.check(order('buy', 1, ts=ns('2024-03-02 01:00Z')), pf) is not None
    assert bar(pf, rm, 85.3, ns('2024-03-02 02:00Z')) is TradingState.ACTIVE     # 9,265: -2.5% on the new day
    assert bar(pf, rm, 80.4, ns('2024-03-02 03:00Z')) is TradingState.REDUCING    # 9,020: beyond -5% of 9,500


def test_a_flat_book_rearms_at_the_next_order():
    t0 = ns('2024-03-01 13:00Z')
    pf, rm, seen = book(breakers=Breakers(0.05, 0.20, calendar=None))
    rm.roll(t0 - H)                                                                 # the day's first bar, as the kernel settles it
    fill(pf, rm, 'buy', 50, 100., ts=t0 - H)
    fill(pf, rm, 'sell', 50, 90., ts=t0)                                            # realized: 9,500
    assert rm.state is TradingState.REDUCING and not pf.positions
    assert rm.check(order('buy', 1, ts=ns('2024-03-01 20:00Z')), pf) is None
    assert rm.check(order('buy', 1, ts=ns('2024-03-02 09:00Z')), pf) is not None    # no bars were watched; the order sees the new day
    assert rm.state is TradingState.ACTIVE


def test_xnys_friday_session_loss_blocks_until_monday_open():
    fri = ns('2024-03-01 21:00Z')                                                   # Friday's close (16:00 New York)
    pf, rm, seen = book(breakers=Breakers(0.05, 0.20), asset=STOCK)                 # calendar 'auto': a stocks-only book
    fill(pf, rm, 'buy', 50, 100., ts=ns('2024-02-29 21:00Z'), asset=STOCK)
    assert bar(pf, rm, 90., fri, asset=STOCK) is TradingState.REDUCING
    assert rm.day_end == ns('2024-03-04 14:30Z')                                     # Monday's open
    for t in ('2024-03-02 12:00Z', '2024-03-03 23:00Z', '2024-03-04 00:30Z', '2024-03-04 14:29:59Z'):
        assert rm.check(order('buy', 1, ts=ns(t), asset=STOCK), pf) is None, t     # the weekend and Monday's pre-open: blocked
        assert rm.state is TradingState.REDUCING
    assert rm.check(order('buy', 1, ts=ns('2024-03-04 14:31Z'), asset=STOCK), pf) is not None   # the new session
    assert rm.state is TradingState.ACTIVE


def test_xnys_session_ends_with_the_bar_at_monday_close():
    pf, rm, seen = book(breakers=Breakers(0.05, 0.20), asset=STOCK)
    fill(pf, rm, 'buy', 50, 100., ts=ns('2024-02-29 21:00Z'), asset=STOCK)
    bar(pf, rm, 90., ns('2024-03-01 21:00Z'), asset=STOCK)
    assert bar(pf, rm, 90., ns('2024-03-04 21:00Z'), asset=STOCK) is TradingState.ACTIVE


def test_a_mixed_book_uses_the_utc_day():
    pf, rm, seen = book(marks={'X': 100., 'B/USDT': 10.}, breakers=Breakers(0.05, 0.20), asset={'X': STOCK, 'B/USDT': CRYPTO})
    fill(pf, rm, 'buy', 50, 100., ts=ns('2024-02-29 21:00Z'), asset=STOCK)
    bar(pf, rm, 90., ns('2024-03-01 21:00Z'), asset=STOCK)
    assert rm.state is TradingState.REDUCING
    assert rm.check(order('buy', 1, sym='B/USDT', ts=ns('2024-03-02 00:30Z')), pf) is not None   # Saturday is a new UTC day


# -- snapshot, restore, resume ----------------------------------------------------------------------------------------

def test_snapshot_restore_roundtrip_keeps_a_tripped_breaker():
    pf, rm, seen = _held(Breakers(0.05, 0.20, calendar=None))
    bar(pf, rm, 90., 2*H); bar(pf, rm, 60., 3*H)
    snap = json.loads(json.dumps(rm.snapshot()))                                     # JSON-ready
    assert snap['state'] == 'halted' and snap['n_changes'] == 2 and snap['peak'] == 10_000.
    again = RiskManager([MaxPositionPct(0.1)], Breakers(0.05, 0.20, calendar=None)).restore(snap)
    assert again.snapshot() == snap
    assert (again.state, again.rule, again.peak, again.day_start) == (TradingState.HALTED, 'max_drawdown', 10_000., 10_000.)
    pf2 = Portfolio(10_000., risk=again); pf2.marks['X'] = 100.; pf2.asset_types['X'] = CRYPTO
    again.bind(pf2)
    assert again.peak == 10_000. and again.state is TradingState.HALTED              # binding keeps what was restored
    assert again.check(order('buy', 1, ts=4*H), pf2) is None


def test_restore_refuses_bad_snapshots_and_keeps_unknowns_unknown():
    fresh = RiskManager(breakers=Breakers(calendar=None))
    snap = fresh.snapshot()
    assert snap['peak'] is None and snap['state'] == 'active'                        # "not known yet" is null
    assert math.isnan(RiskManager().restore(snap).peak)
    with pytest.raises(ConfigError, match='snapshot lacks'): RiskManager().restore({'state': 'halted'})
    with pytest.raises(ConfigError, match="unknown trading state 'paused'"): RiskManager().restore(dict(snap, state='paused'))


def test_resume_rearms_the_peak_and_the_day():
    pf, rm, seen = _held(Breakers(0.05, 0.20, calendar=None))
    bar(pf, rm, 60., 2*H)
    assert rm.state is TradingState.HALTED
    with pytest.raises(ConfigError, match='say who resumes'): rm.resume(by='', reason='x')
    with pytest.raises(ConfigError, match='say who resumes'): rm.resume(by='ada', reason='')
    rm.resume(by='ada', reason='reviewed', ts=3*H)
    assert (rm.state, rm.peak, rm.day_start, rm.rule) == (TradingState.ACTIVE, 8_000., 8_000., 'manual_resume')
    a = alerts(seen)[-1]
    assert (a.rule, a.severity, a.data['state'], a.data['previous']) == ('manual_resume', Severity.INFO, 'active', 'halted')
    assert rm.check(order('buy', 1, ts=3*H), pf) is not None
    assert bar(pf, rm, 57.2, 4*H + D) is TradingState.ACTIVE                      # 7,860: -1.75% from the re-armed peak
    assert bar(pf, rm, 28., 5*H + 2*D) is TradingState.HALTED                     # 6,400: -20% of 8,000
    n = len(seen)
    rm2 = RiskManager(publish=seen.append); rm2.resume(by='ada', reason='nothing to do')
    assert len(seen) == n and rm2.state is TradingState.ACTIVE                       # resuming an active manager is a no-op


def test_manual_halt_needs_a_reason_and_blocks():
    pf, rm, seen = book(breakers=Breakers(calendar=None))
    with pytest.raises(ConfigError, match='say why'): rm.halt('')
    rm.halt('venue incident', by='ada', ts=5)
    assert (rm.state, rm.rule, rm.since) == (TradingState.HALTED, 'manual_halt', 5) and 'venue incident' in rm.reason
    assert rm.check(order('buy', 1), pf) is None


# -- a trip at a real broker ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('to', [TradingState.REDUCING, TradingState.HALTED])
def test_leaving_active_cancels_working_entries_and_keeps_protective_orders(to):
    pf, rm, seen = book(marks={'X': 100., 'Y': 10.}, breakers=Breakers(0.05, 0.20, calendar=None), broker=True)
    b = pf.orders
    fill(pf, rm, 'buy', 50, 100.)
    entry_y = order('buy', 30, sym='Y', ts=H); b.on_order(entry_y)
    entry_x = order('buy', 1, sym='X', ts=H, otype='limit', limit=95.); b.on_order(entry_x)
    stop = order('sell', 50, ts=H, otype='stop', stop=50., reduce_only=True); b.on_order(stop)
    tp = order('sell', 50, ts=H, otype='limit', limit=120., reduce_only=True); b.on_order(tp)
    assert b.open_quantity('Y') == 30. and b.open_quantity('X') == 1.
    bar(pf, rm, 90. if to is TradingState.REDUCING else 60., 2*H)
    assert rm.state is to
    assert b.status[entry_y.client_order_id] == b.status[entry_x.client_order_id] == 'cancelled'
    assert b.status[stop.client_order_id] == b.status[tp.client_order_id] == 'new'
    assert b.open_quantity('Y') == 0. and b.open_quantity('X') == 0.
    # the protective stop still fills (the gap opens below it: at the open), whatever the state
    b.on_bar(MarketDataEvent('X', '1h', 45., 46., 40., 44., 1e9, 3*H, 3*H))
    fills = [e for e in seen if isinstance(e, FillEvent)]
    assert [(f.client_order_id, f.price, f.quantity) for f in fills] == [(stop.client_order_id, 45., 50.)]


# -- the limits again at the fill --------------------------------------------------------------------------------------

def _filled(seen): return [e for e in seen if isinstance(e, FillEvent)]


def test_fill_room_cuts_a_fill_that_gapped_above_the_limit():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10)], broker=True)
    b = pf.orders
    b.publish = lambda e: (seen.append(e), isinstance(e, FillEvent) and pf.on_fill(e))
    o = rm.check(order('buy', 10), pf)                                              # 10% at 100: approved
    b.on_order(o)
    b.on_bar(MarketDataEvent('X', '1h', 125., 130., 120., 128., 1e9, H, H))          # opens at 125
    [f] = _filled(seen)
    assert f.price == 125. and f.quantity == pytest.approx(8.)                      # 8 x 125 = 1,000: 10% again
    assert b.status[o.client_order_id] == 'cancelled'                               # the rest is cancelled
    a = alerts(seen)[-1]
    assert (a.rule, a.data['at_fill'], a.data['requested'], a.data['price']) == ('max_position_pct', True, 10., 125.)
    assert a.data['quantity_after'] == pytest.approx(8.) and dict(a.data['order'])['quantity'] == 10.
    assert pf.quantity('X')*125. <= 0.10*pf.equity()*(1 + 1e-12)


def test_fill_room_rejects_below_the_minimum_and_never_cuts_reduce_only_orders():
    pf, rm, seen = book(checks=[MaxPositionPct(0.10)], broker=True, instruments={'X': Instrument('X', 0.01, min_notional=900.)})
    b = pf.orders
    b.publish = lambda e: (seen.append(e), isinstance(e, FillEvent) and pf.on_fill(e))
    o = rm.check(order('buy', 10), pf)
    b.on_order(o)
    b.on_bar(MarketDataEvent('X', '1h', 200., 200., 200., 200., 1e9, H, H))          # 5 units fit (1,000 >= the 900 minimum)
    assert _filled(seen)[-1].quantity == pytest.approx(5.)
    o3 = order('buy', 5, ts=H)                                                     # (approved when made, say)
    b.on_order(o3)
    b.on_bar(MarketDataEvent('X', '1h', 190., 190., 190., 190., 1e9, 2*H, 2*H))      # 0.2368 more would fit: 44.99 of notional
    assert b.status[o3.client_order_id] == 'cancelled' and len(_filled(seen)) == 1   # rejected at the fill, not rounded up
    a = alerts(seen)[-1]
    assert (a.data['quantity_after'], a.data['at_fill']) == (0., True) and a.data['allowed'] == pytest.approx(0.1*9_950/190 - 5)
    ex = order('sell', 5, ts=2*H, reduce_only=True)
    b.on_order(ex)
    b.on_bar(MarketDataEvent('X', '1h', 400., 400., 400., 400., 1e9, 3*H, 3*H))      # 5 x 400 is 20% now: an exit is never cut
    assert (_filled(seen)[-1].client_order_id, _filled(seen)[-1].quantity) == (ex.client_order_id, 5.)
    assert pf.quantity('X') == 0.


def test_room():
    o = lambda side, q: order(side, q)
    assert room(0., o('buy', 5), 3.) == 3. and room(2., o('buy', 5), 3.) == 1. and room(4., o('buy', 5), 3.) == 0.
    assert room(4., o('sell', 9), 3.) == 7. and room(-2., o('buy', 1), 3.) == 5.


def test_a_book_at_or_below_zero_equity_halts_and_never_divides_by_zero():
    "A short that doubles wipes out equity: the drawdown breaker halts at zero equity; a resumed book whose peak and day "
    "start are zero or negative still trips (losses against |reference|), with no ZeroDivisionError in the message."
    pf, rm, seen = book(1_000., {'X': 10.}, breakers=Breakers(0.05, 0.20, calendar=None), asset=STOCK)
    fill(pf, rm, 'sell', 100, 10., asset=STOCK)             # short 100 at 10: cash 2,000, equity 1,000
    assert bar(pf, rm, 20., 2*H, asset=STOCK) is TradingState.HALTED     # equity 0
    assert rm.rule == 'max_drawdown' and 'no equity left' in rm.reason
    rm.resume(by='ops', reason='test')                      # the peak and the day start re-arm at 0
    assert (rm.peak, rm.day_start) == (0., 0.)
    assert bar(pf, rm, 21., 3*H, asset=STOCK) is TradingState.HALTED     # equity -100: below any floor
    assert 'from the equity peak 0.00' in rm.reason

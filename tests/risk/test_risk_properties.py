"""Properties of the risk layer over random books: 2-3 symbols (one may be a shortable stock), random price paths with
occasional large gaps, a scripted strategy sending random long/short/exit signals, random participation caps, lot
sizes, sizers and limits. A checker on the kernel's bus asserts, event by event:

- after every fill that adds exposure (|position| grows), with the filled symbol marked at the fill price and the others
  at their last close: the strategy's position <= its position limit, the symbol's <= the symbol limit, the book's
  gross exposure <= the invested limit (float rounding only);
- such fills happen only while ACTIVE; no order reaches the broker while HALTED, and none that opens exposure while
  REDUCING; reduce-only orders never flip (or grow) a position;
- the drawdown breaker trips on the event of the breach (and not before);
- the replay loop and the step kernel agree fill for fill."""
import math
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st, HealthCheck, assume
from quantsage.events import AssetType, FillEvent, OrderEvent, Side, Topic
from quantsage.exits import ExitRules
from quantsage.limits import CorrelationLimit, MaxInvested, MaxPositionPct, MaxSymbolExposure, risk_from_config
from quantsage.portfolio import FixedQuantity, Instrument, PercentOfEquity
from quantsage.risk import Breakers, RiskManager, TradingState, reducing_quantity
from quantsage.sizing import RiskBased
from .harness import Rig, Scripted, costs, frame, signed

SETTINGS = dict(deadline=None, database=None, derandomize=True, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _path(rng, n, p0, vol, gap_p, gap):
    "Positive OHLC bars: log-normal closes, occasional gaps at the open of up to `gap` either way."
    o, h, l, c = (np.empty(n) for _ in range(4))
    prev = p0
    for i in range(n):
        g = rng.uniform(-gap, gap) if rng.random() < gap_p else rng.normal(0, vol/4)
        o[i] = prev*math.exp(g)
        c[i] = o[i]*math.exp(rng.normal(0, vol))
        h[i] = max(o[i], c[i])*math.exp(abs(rng.normal(0, vol/2)))
        l[i] = min(o[i], c[i])*math.exp(-abs(rng.normal(0, vol/2)))
        prev = c[i]
    return o, h, l, c


@st.composite
def books(draw, default_limits=False):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(30, 90))
    syms = ['A/USDT', 'B/USDT'] + (['C/USDT'] if draw(st.booleans()) else [])
    if draw(st.booleans()): syms[-1] = 'STK'                              # a stock, shortable
    grid = pd.date_range('2024-03-04 01:00', periods=n, freq='h', tz='UTC', name='ts')
    vol, gap_p, gap = draw(st.floats(0.002, 0.04)), draw(st.floats(0., 0.15)), draw(st.floats(0.02, 0.45))
    data, instruments = {}, {}
    for s in syms:
        keep = np.sort(rng.choice(n, size=max(int(n*rng.uniform(0.75, 1.0)), 5), replace=False))
        o, h, l, c = _path(rng, len(keep), float(rng.uniform(5, 500) if s == 'STK' else rng.uniform(0.5, 60_000)), vol, gap_p, gap)
        v = rng.lognormal(3, 1.5, len(keep))
        data[s] = pd.DataFrame({'open': o, 'high': h, 'low': l, 'close': c, 'volume': v}, index=grid[keep])
        lot = 1. if s == 'STK' else draw(st.sampled_from([0., 1e-5, 1e-3, 0.1, 1.]))
        instruments[s] = Instrument(s, lot, 0.01 if s == 'STK' else 0., 0., draw(st.sampled_from([0., 0., 5., 50.])))
    plan = {}
    p_sig = draw(st.floats(0.03, 0.3))
    for s in syms:
        for k in range(len(data[s])):
            if rng.random() < p_sig:
                plan[(s, k)] = (str(rng.choice(['long', 'long', 'short', 'exit'])), float(rng.choice([1.0, 1.0, 0.5, 0.25])))
    cash = draw(st.sampled_from([1_000., 20_000., 100_000., 2_500_000.]))
    kind = draw(st.sampled_from(['fraction', 'fixed', 'risk']))
    sizer = {'fraction': lambda: PercentOfEquity(draw(st.floats(0.05, 1.0))),
             'fixed': lambda: FixedQuantity(draw(st.floats(0.01, 500.))),
             'risk': lambda: RiskBased(draw(st.floats(0.002, 0.05)))}[kind]()
    share = draw(st.sampled_from([None, None, 0.5, 0.1, 0.01]))
    fee = draw(st.sampled_from([0., 10.]))
    if default_limits:
        limits = dict(pos=0.10, sym=0.15, inv=0.80, dd=0.20, dl=0.05)
    else:
        limits = dict(pos=draw(st.floats(0.02, 0.6)), sym=draw(st.floats(0.02, 0.8)), inv=draw(st.floats(0.05, 1.0)),
                      dd=draw(st.one_of(st.none(), st.floats(0.02, 0.5))), dl=draw(st.one_of(st.none(), st.floats(0.005, 0.2))),
                      corr=draw(st.one_of(st.none(), st.tuples(st.floats(0.2, 0.95), st.integers(3, 20), st.sampled_from(['reduce', 'deny'])))),
                      exits=draw(st.one_of(st.none(), st.builds(
                          lambda sl, rr, tr, mh: ExitRules(sl, rr if sl is not None else None, tr, 5, mh),
                          st.one_of(st.none(), st.fixed_dictionaries({'crypto': st.floats(0.005, 0.1), 'stock': st.floats(0.005, 0.1)})),
                          st.floats(0.5, 4.), st.one_of(st.none(), st.floats(0.5, 4.)), st.one_of(st.none(), st.integers(1, 12))))))
    return dict(data=data, instruments=instruments, plan=plan, cash=cash, sizer=sizer, share=share, fee=fee, limits=limits)


def make_risk(lim, default_limits=False):
    if default_limits: return risk_from_config()
    checks = [MaxPositionPct(lim['pos']), MaxSymbolExposure(lim['sym']), MaxInvested(lim['inv'])]
    if lim['corr'] is not None: checks.append(CorrelationLimit(*lim['corr']))
    br = Breakers(lim['dl'], lim['dd'], 'auto') if (lim['dl'] or lim['dd']) else None
    return RiskManager(checks, br, lim['exits'])


class Checker:
    "Subscribed around the kernel's own handlers; raises AssertionError at the first event that breaks a promise."
    def __init__(self, lim):
        self.lim, self.rig = lim, None
        self.orders, self.before = {}, None
        self.peak, self.was_halted = None, False
        self.n_growing = self.n_reduce_only = self.n_orders_sent = 0

    # -- ahead of the kernel's handlers
    def pre_fill(self, f):
        pf, rm = self.rig.pf, self.rig.risk
        self.before = (f.fill_id, rm.state, pf.quantity(f.symbol))

    # -- after the kernel's handlers
    def post_fill(self, f):
        pf, rm, lim = self.rig.pf, self.rig.risk, self.lim
        fid, state0, q0 = self.before
        assert fid == f.fill_id
        q1 = pf.quantity(f.symbol)
        assert q1 == pytest.approx(q0 + signed(f), abs=1e-9*max(abs(q0), abs(q1), 1.))
        o = self.orders[f.client_order_id]
        if o.reduce_only:                                                      # never flips, never grows
            self.n_reduce_only += 1
            assert abs(q1) <= abs(q0) + 1e-12 and (q1 == 0 or (q1 > 0) == (q0 > 0)), (o, q0, q1)
        if abs(q1) > abs(q0)*(1 + 1e-12):                                       # this fill added exposure
            self.n_growing += 1
            assert state0 is TradingState.ACTIVE, f"an entry filled while {state0}: {f}"
            assert not o.reduce_only
            eq, px = pf.equity(), f.price
            assert pf.marks[f.symbol] == px
            lot = pf.instrument(f.symbol).lot_size
            tol = lambda a, b: a <= b + 1e-9*max(abs(a), abs(b)) + 1e-9*lot*px + 1e-9
            pos = abs(pf.strategy_quantity(f.strategy_id, f.symbol))*px
            sym = abs(q1)*px
            gross = pf.exposure()
            assert tol(pos, lim['pos']*max(eq, 0.)), f"position {pos:.6f} > {lim['pos']:.4f} x equity {eq:.6f} after {f}"
            assert tol(sym, lim['sym']*max(eq, 0.)), f"symbol {sym:.6f} > {lim['sym']:.4f} x equity {eq:.6f} after {f}"
            assert tol(gross, lim['inv']*max(eq, 0.)), f"gross {gross:.6f} > {lim['inv']:.4f} x equity {eq:.6f} after {f}"
        self._watch()

    def on_order(self, o):
        pf, rm, broker = self.rig.pf, self.rig.risk, self.rig.broker
        self.orders[o.client_order_id] = o
        if o.client_order_id not in broker.status: return                      # not handed to the broker (refused at the last gate)
        self.n_orders_sent += 1
        assert rm.state is not TradingState.HALTED, f"order reached the broker while HALTED: {o}"
        if rm.state is TradingState.REDUCING:
            assert o.reduce_only or reducing_quantity(o, pf.quantity(o.symbol)) >= o.quantity, f"entry reached the broker while REDUCING: {o}"

    def on_bar(self, ev): self._watch()

    def _watch(self):
        "The drawdown breaker trips on the event of the breach: replayed from equity independently of the manager."
        dd = self.lim.get('dd')
        if dd is None: return
        rm, eq = self.rig.risk, self.rig.pf.equity()
        self.peak = eq if self.peak is None else max(self.peak, eq)
        halted = rm.state is TradingState.HALTED
        if eq < self.peak*(1 - dd)*(1 - 1e-9) - 1e-9:
            assert halted, f"equity {eq:.4f} is {1 - eq/self.peak:.2%} below the peak {self.peak:.4f} but the state is {rm.state}"
        if halted and not self.was_halted:                                     # it tripped at this event: the breach is real
            assert eq <= self.peak*(1 - dd)*(1 + 1e-9) + 1e-9, f"halted at equity {eq} with peak {self.peak}"
        self.was_halted = halted


def run_book(b, default_limits=False, loop='replay', check=True):
    lim = b['limits']
    ck = Checker(lim)
    rig = Rig(Scripted(b['plan']), b['data'], risk=make_risk(lim, default_limits), cash=b['cash'], sizer=b['sizer'],
              cost=costs(b['fee'], b['share']), instruments=b['instruments'], allow_short=True,
              before=[(Topic.FILL, ck.pre_fill)] if check else ())
    ck.rig = rig
    if check:
        rig.bus.subscribe(Topic.FILL, ck.post_fill)
        rig.bus.subscribe(Topic.ORDER, ck.on_order)
        rig.bus.subscribe(Topic.MARKET_DATA, ck.on_bar)
    rig.run(loop)
    return rig, ck


@settings(max_examples=150, **SETTINGS)
@given(books())
def test_random_books_keep_every_promise(b):
    rig, ck = run_book(b)
    assert ck.n_orders_sent == sum(1 for s in rig.broker.status)                # every order the broker holds was checked


@settings(max_examples=80, **SETTINGS)
@given(books(default_limits=True))
def test_random_books_keep_every_promise_with_the_default_layers(b):
    rig, ck = run_book(b, default_limits=True)
    assert rig.risk.exits is not None and ck.n_orders_sent == len(rig.broker.status)


def _fills(rig):
    return [(f.client_order_id, f.symbol, f.side.value, f.quantity, f.price, f.fee, f.ts_event) for f in rig.of(FillEvent)]


@settings(max_examples=60, **SETTINGS)
@given(books())
def test_replay_loop_and_step_kernel_agree(b):
    fast, _ = run_book(b, check=False)
    slow, _ = run_book(b, loop='step', check=False)
    assert _fills(fast) == _fills(slow)
    assert fast.risk.snapshot() == slow.risk.snapshot() and fast.risk.decisions == slow.risk.decisions
    assert fast.pf.cash == slow.pf.cash


def test_a_partly_filled_flip_still_counts_its_open_position_in_gross_exposure():
    """A flip order still working (a participation cap fills it 10 shares a bar) must not hide the position it has not
    closed yet: Y is held 300 long with a working sell of 309 (close 300, open 9 short). While 280 are still held, a
    new short in Z must see the book at 80% gross already, not at 50.9%."""
    n = 10
    idx = pd.date_range('2024-03-04 01:00', periods=n, freq='h', tz='UTC', name='ts')
    c = np.full(n, 100.)
    data = {'X': frame(c, start=idx), 'Y': frame(c, start=idx, volume=np.r_[1e9, 1e9, 1e9, np.full(n - 3, 100.)]),
            'Z': frame(c, start=idx)}
    plan = {('X', 1): 'long', ('Y', 1): 'long', ('Y', 3): ('short', 0.01), ('Z', 4): 'short'}
    lim = dict(pos=0.5, sym=0.5, inv=0.8, dd=None)
    ck = Checker(lim)
    rig = Rig(Scripted(plan), data, risk=RiskManager([MaxPositionPct(0.5), MaxSymbolExposure(0.5), MaxInvested(0.8)]),
              cost=costs(0., 0.1), before=[(Topic.FILL, ck.pre_fill)])
    ck.rig = rig
    gross = []
    rig.bus.subscribe(Topic.FILL, lambda f: gross.append((f.symbol, rig.pf.exposure()/rig.pf.equity())))
    rig.bus.subscribe(Topic.FILL, ck.post_fill)
    rig.bus.subscribe(Topic.ORDER, ck.on_order)
    rig.run()
    assert [s for s, _ in gross][:3] == ['X', 'Y', 'Y'] and gross[1][1] == pytest.approx(0.80)   # 50% X + 30% Y, then Y starts to flip
    assert all(g <= 0.80*(1 + 1e-9) for _, g in gross), f"gross exposure after the fills: {[(s, round(g, 4)) for s, g in gross]}"


def test_an_opposite_working_order_does_not_make_room_for_a_fill():
    """Short 60 of a 100-share (10%) sell filled, 40 still working; a long signal then sends a buy of 200 (cover and flip).
    The price jumps to 120: 10% of equity is now 82 shares. The older sell fills first at 120: right after it the short must
    be within 10%, whatever the buy working behind it will do later (it may be cut, cancelled or not fill)."""
    idx = pd.date_range('2024-03-04 01:00', periods=6, freq='h', tz='UTC', name='ts')
    c = np.array([100., 100., 100., 120., 120., 120.])
    data = {'STK': frame(c, c, start=idx, volume=600.)}                       # 10% of 600: 60 shares a bar per order
    lim = dict(pos=0.10, sym=1.0, inv=1.0, dd=None)
    ck = Checker(lim)
    rig = Rig(Scripted({('STK', 1): 'short', ('STK', 2): 'long'}), data, risk=RiskManager([MaxPositionPct(0.10)]),
              cost=costs(0., 0.1), before=[(Topic.FILL, ck.pre_fill)])
    ck.rig = rig
    after = []
    rig.bus.subscribe(Topic.FILL, lambda f: after.append((f.client_order_id, f.side.value, f.quantity, f.price,
                                                          abs(rig.pf.quantity('STK'))*f.price/rig.pf.equity())))
    rig.bus.subscribe(Topic.ORDER, ck.on_order)
    rig.run()
    assert after[0][:4] == ('o0000001', 'sell', 60., 100.)
    grew = [a for a in after if a[1] == 'sell']
    assert all(pct <= 0.10*(1 + 1e-9) for *_, pct in grew), f"short after each sell fill: {[(q, p, round(x, 4)) for _, _, q, p, x in grew]}"

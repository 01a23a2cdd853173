"""A synthetic crash through the whole engine: several symbols at steady prices, positions opened with the default layers
and exits, then a day whose open gaps 30% below every stop. The daily-loss breaker trips REDUCING on the bar of the
breach, a deeper book trips the drawdown breaker (HALTED), the stops fill at the gap's open, the alerts are stored,
and the loss stays within the promised bounds; the same run without the risk layers loses much more."""
import numpy as np, pandas as pd, pytest
from quantsage.config import RiskConfig, PositionLimits, SymbolLimits, PortfolioLimits
from quantsage.data.store import Store
from quantsage.engine.backtest import backtest
from quantsage.limits import risk_from_config
from .harness import Scripted, frame, stock_sessions

SYMS = ['S0/USDT', 'S1/USDT', 'S2/USDT', 'S3/USDT', 'S4/USDT']
GAP = 0.30
IDX = pd.date_range('2024-03-04 01:00', periods=72, freq='h', tz='UTC', name='ts')   # three UTC days
CRASH = 33                                                                           # 2024-03-05 10:00: day two


def crash_data(syms=SYMS, idx=IDX, crash=CRASH, after=60., p=100.):
    "Steady at `p`; the crash bar opens 30% lower (below every stop), then the price sinks to `after` and stays."
    n = len(idx)
    closes = np.full(n, p)
    closes[crash:] = np.linspace(p*(1 - GAP) - 2, after, n - crash)
    closes[crash + 12:] = after
    opens = np.r_[p, closes[:-1]]
    opens[crash] = p*(1 - GAP)
    highs = np.maximum(opens, closes) + 0.5
    highs[:crash] = p                                                 # nothing touches the take-profit before the crash
    lows = np.minimum(opens, closes) - 0.5
    lows[:crash] = p                                                  # ... nor the stop
    return {s: frame(closes, opens, highs, lows, volume=1e9, start=idx) for s in syms}


def plan(syms, entry=2, again=(), conf=1.0):
    p = {(s, entry): ('long', conf) for s in syms}
    for k in again: p.update({(s, k): ('long', conf) for s in syms})
    return p


def deep_risk():
    return risk_from_config(RiskConfig(position=PositionLimits(max_position_pct=0.30), symbol=SymbolLimits(0.30),
                                       portfolio=PortfolioLimits(max_invested_pct=0.80)))


def run(risk, again=(), data=None, syms=SYMS, **kw):
    return backtest(Scripted(plan(syms, again=again)), data or crash_data(syms), risk=risk, check_data=False, slippage=0,
                    initial_cash=100_000., fraction=0.95, **kw)


def _t(k, idx=IDX): return idx[k]


def test_daily_loss_trips_reducing_on_the_crash_bar_and_the_stops_fill_at_the_open():
    res = run(risk_from_config(), again=(CRASH + 2, 50))               # tries to re-enter the same day, and the next day
    rk = res.risk
    trips = [(pd.Timestamp(t, unit='ns', tz='UTC'), rule, state) for t, rule, state in rk['trips']]
    assert trips[0] == (_t(CRASH), 'daily_loss', 'reducing')                                   # on the bar of the breach
    next_day = next(t for t in IDX if t - pd.Timedelta(1, 'ns') >= (_t(CRASH) - pd.Timedelta(1, 'ns')).normalize() + pd.Timedelta('1D'))
    assert trips[1] == (next_day, 'daily_loss', 'active')                  # the next UTC day's first bar re-arms it
    o, f = res.orders, res.fills
    stops = o[(o.order_type == 'stop') & o.reduce_only]
    assert len(stops) >= len(SYMS) and np.allclose(stops.stop_price.iloc[:5], 100.*(1 - 0.02))   # placed at avg x (1 - 2%)
    entries = f[f.ts_event == _t(3)]
    assert len(entries) == len(SYMS) and (entries.price == 100.).all()
    stop_fills = f[f.client_order_id.isin(stops.client_order_id)]
    assert len(stop_fills) == len(SYMS) and (stop_fills.ts_event == _t(CRASH)).all()
    assert (stop_fills.price == 100.*(1 - GAP)).all()                                          # the gap's open, not the stop price
    tps = o[(o.order_type == 'limit') & o.reduce_only & (o.ts_event == _t(3))]
    assert len(tps) == len(SYMS) and (tps.status == 'cancelled').all() and np.allclose(tps.limit_price, 104.)
    a = res.risk_alerts
    assert (a[(a.rule == 'daily_loss') & (a.severity == 'critical')].ts_event == _t(CRASH)).any()
    blocked = a[(a.rule == 'reducing') & (a.ts_event == _t(CRASH + 2))]
    assert len(blocked) == len(SYMS)                                                           # the same-day re-entries: refused
    assert not ((o.ts_event == _t(CRASH + 2)) & ~o.reduce_only).any()
    assert (o[(o.ts_event == _t(50)) & ~o.reduce_only].status != 'rejected').sum() >= 1          # the next day: entries again
    # the loss is bounded: 10% per position x the 30% gap (+ fees); the book <= 80% x the gap (+ fees)
    eq_before = res.equity.loc[_t(CRASH - 1)]
    eq_after = res.equity.loc[_t(CRASH)]
    loss = eq_before - eq_after
    assert 0 < loss <= 0.80*GAP*eq_before + res.metrics['fees']
    assert loss <= len(SYMS)*0.10*GAP*res.initial_cash + res.metrics['fees']
    crash_trades = res.trades[res.trades.exit_time == _t(CRASH)]
    assert len(crash_trades) == len(SYMS)
    for tr in crash_trades.itertuples():
        assert -tr.pnl <= 0.10*GAP*res.initial_cash + tr.fees + 1e-6
        assert tr.quantity*tr.entry_price <= 0.10*res.initial_cash*(1 + 1e-9)


def test_without_the_risk_layers_the_same_crash_costs_much_more():
    safe = run(risk_from_config())
    bare = run(None)
    first = bare.fills.iloc[0]
    assert first.quantity*first.price > 0.9*bare.initial_cash and len(bare.risk_alerts[bare.risk_alerts.layer != 'portfolio']) == 0
    loss_safe = 1 - safe.equity.iloc[-1]/safe.initial_cash
    loss_bare = 1 - bare.equity.iloc[-1]/bare.initial_cash
    assert loss_bare > 0.35                                            # 95% invested, held through the whole fall to 60
    assert loss_safe < 0.17 and loss_bare > 2*loss_safe


def test_a_deeper_book_trips_the_drawdown_breaker_and_stays_halted():
    res = run(deep_risk(), again=(CRASH + 2, 50, 60))
    rk = res.risk
    assert rk['state'] == 'halted' and rk['rule'] == 'max_drawdown'
    states = [(pd.Timestamp(t, unit='ns', tz='UTC'), rule, state) for t, rule, state in rk['trips']]
    assert states == [(_t(CRASH), 'daily_loss', 'reducing'), (_t(CRASH), 'max_drawdown', 'halted')]   # both on the crash bar
    o, f = res.orders, res.fills
    assert not (o.ts_event > _t(CRASH)).any()                                                   # nothing reaches the broker after
    a = res.risk_alerts
    assert set(a[a.ts_event > _t(CRASH)].rule) == {'halted'}                                     # every later attempt: refused
    assert len(a[a.rule == 'halted']) >= 2*len(SYMS)
    first = f[f.ts_event == _t(3)]
    notional = first.quantity*first.price
    assert notional.sum() <= 0.80*res.initial_cash*(1 + 1e-9)                                    # the cash reserve held
    assert (notional <= 0.30*res.initial_cash*(1 + 1e-9)).all() and (notional > 0.29*res.initial_cash).sum() >= 2
    loss = res.equity.loc[_t(CRASH - 1)] - res.equity.loc[_t(CRASH)]
    assert 0.20*res.initial_cash < loss <= 0.80*GAP*res.initial_cash + res.metrics['fees']
    assert (f[f.ts_event == _t(CRASH)].price == 70.).all()
    assert res.positions == {}


def test_alerts_are_stored_in_the_risk_events_table(tmp_path):
    res = run(deep_risk(), again=(CRASH + 2,))
    with Store(f"sqlite:///{tmp_path}/crash.sqlite") as st:
        counts = res.save(st)
        ev = st.read_table('risk_events', run_id=res.run_id)
        sysev = st.read_table('system_events', run_id=res.run_id)
    assert counts['risk_events'] == len(ev) == len(res.risk_alerts) > 0
    dd = ev[ev.rule == 'max_drawdown'].iloc[0]
    assert (dd.layer, dd.severity, dd.ts_event) == ('system', 'critical', _t(CRASH))
    assert dd.data['state'] == 'halted' and dd.data['peak'] > dd.data['equity']
    sized = ev[ev.rule == 'max_position_pct'].iloc[0]
    assert sized.data['order']['side'] == 'buy' and sized.data['requested'] > sized.data['allowed']
    assert {'halted', 'daily_loss', 'max_invested_pct'} <= set(ev.rule)
    assert (sysev.kind == 'risk_state').sum() == 2 and set(sysev[sysev.kind == 'risk_state'].data.map(lambda d: d['state'])) == {'reducing', 'halted'}


def test_a_stock_book_loss_on_friday_blocks_entries_until_monday():
    idx = stock_sessions(12, '2024-02-26')                       # Mon 26 Feb .. Mon 11 Mar; Fri 1 Mar is session 4
    syms = ['AAA', 'BBB', 'CCC']
    fri = list(idx).index(pd.Timestamp('2024-03-01 21:00', tz='UTC'))
    data = crash_data(syms, idx, fri, after=65.)
    res = run(risk_from_config(), again=(fri, fri + 1), data=data, syms=syms)
    rk = res.risk
    trips = [(pd.Timestamp(t, unit='ns', tz='UTC'), rule, state) for t, rule, state in rk['trips']]
    assert trips[:2] == [(idx[fri], 'daily_loss', 'reducing'), (idx[fri + 1], 'daily_loss', 'active')]   # Friday .. Monday
    o, f = res.orders, res.fills
    stops = o[(o.order_type == 'stop') & o.reduce_only & (o.ts_event == idx[1])]
    assert np.allclose(stops.stop_price, 97.)                                                  # stocks: 3%
    assert (f[f.ts_event == idx[fri]].price == 70.).all()                                      # gapped through: the open
    a = res.risk_alerts
    # Friday: AAA's bar came first (one stop: -3%, still ACTIVE), so its re-entry was sent, then cancelled when BBB's stop
    # took the day past -5%; BBB's and CCC's re-entries were refused
    assert set(a[(a.ts_event == idx[fri]) & (a.rule == 'reducing')].symbol) == {'BBB', 'CCC'}
    fri_entries = o[(o.ts_event == idx[fri]) & ~o.reduce_only]
    assert list(fri_entries.symbol) == ['AAA'] and list(fri_entries.status) == ['cancelled'] and (fri_entries.filled_quantity == 0).all()
    monday = o[(o.ts_event == idx[fri + 1]) & ~o.reduce_only]
    assert len(monday) == len(syms)                                                            # Monday's: sent
    assert (f.ts_event == idx[fri + 2]).sum() >= len(syms)                                     # and filled Tuesday


@pytest.mark.parametrize('exits', [True, False])
def test_the_strategy_sees_the_trip_on_the_bar_of_the_breach(exits):
    "The breakers run after a bar's fills and mark and before the strategy: the bar that breaches is the bar that trips."
    from quantsage.risk import RiskManager
    rm = risk_from_config()
    if not exits: rm = RiskManager(rm.checks, rm.breakers, None)     # no stops: the breach comes from the marks alone
    seen = []
    class Watching(Scripted):
        def on_market_data(self, ev):
            seen.append((ev.ts_event, ev.symbol, rm.state.value))
            return super().on_market_data(ev)
    res = backtest(Watching(plan(SYMS)), crash_data(), risk=rm, check_data=False, slippage=0, initial_cash=100_000., fraction=0.95)
    crash = [(s, st) for ts, s, st in seen if ts == _t(CRASH).value]
    before = {st for ts, s, st in seen if ts < _t(CRASH).value}
    assert before == {'active'}
    assert crash[0] == ('S0/USDT', 'active')                                  # -3%: not yet
    assert all(st == 'reducing' for s, st in crash[1:]), crash                 # S1's bar takes the day past -5%: tripped before the strategy
    assert pd.Timestamp(res.risk['trips'][0][0], unit='ns', tz='UTC') == _t(CRASH)

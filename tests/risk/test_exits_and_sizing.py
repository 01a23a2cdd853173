"""Exits inside backtests on crafted bars (a gap through the stop fills at the open, one of the pair cancels the other,
ATR trailing and time exits at a bar's close, reduce-only orders never open the other way); the same results from the
replay loop, the step kernel and the incremental view with the risk layers on real BTC/ETH hourly data; the sizers
inside backtests (risk-based before the caps, ATR, Kelly's warm-up); the presets' sizing and exits; and instruments
from the real ccxt client against the loopback Binance."""
import math
import numpy as np, pandas as pd, pytest
from quantsage.config import load_config, RiskConfig, PositionLimits, SymbolLimits, PortfolioLimits, SystemLimits
from quantsage.data.ccxt_source import CCXTSource
from quantsage.engine.backtest import backtest
from quantsage.exits import ExitRules, exits_from_config
from quantsage.indicators import ATR
from quantsage.limits import risk_from_config
from quantsage.portfolio import Instrument, FixedQuantity
from quantsage.risk import RiskManager
from quantsage.sizing import RiskBased, AtrSized, Kelly, sizer_from_config
from .harness import Scripted, frame, ns
from .conftest import VENUE_NOW

ROOT = __import__('pathlib').Path(__file__).resolve().parents[2]
T0 = pd.Timestamp('2024-01-01 01:00', tz='UTC')


def t(k): return T0 + pd.Timedelta(hours=k)


def bt(plan, data, **kw):
    kw.setdefault('slippage', 0); kw.setdefault('commission', 0); kw.setdefault('check_data', False)
    return backtest(Scripted(plan), data, **kw)


def positions_path(res, sym):
    "The position after each fill of `sym`, in order."
    q, out = 0., []
    for f in res.fills[res.fills.symbol == sym].itertuples():
        q += f.quantity if f.side == 'buy' else -f.quantity
        out.append(q)
    return out


# -- the resting pair ---------------------------------------------------------------------------------------------------

def test_stop_is_active_from_the_next_bar_and_a_gap_fills_at_the_open():
    c = [100., 100., 100., 100., 95., 95.]
    o = [100., 100., 100., 100., 95., 95.]
    lows = [100., 100., 90., 99., 94., 95.]                # the entry bar itself dips to 90: the stop is not working yet
    data = frame(c, o, None, lows, symbol='X/USDT')
    res = bt({('X/USDT', 1): 'long'}, {'X/USDT': data}, risk=True)
    f, o_ = res.fills, res.orders
    entry = f.iloc[0]
    assert (entry.ts_event, entry.price) == (t(2), 100.)
    stop = o_[o_.order_type == 'stop'].iloc[0]
    tp = o_[o_.order_type == 'limit'].iloc[0]
    assert stop.reduce_only and tp.reduce_only and stop.ts_event == tp.ts_event == t(2)        # placed when the entry filled
    assert stop.stop_price == pytest.approx(98.) and tp.limit_price == pytest.approx(104.)    # 2% below, 2:1 above
    assert stop.quantity == tp.quantity == entry.quantity
    out = f.iloc[1]
    assert (out.client_order_id, out.ts_event, out.price) == (stop.client_order_id, t(4), 95.)  # the gap's open, not 98
    assert res.order_status[tp.client_order_id] == 'cancelled' and res.positions == {}
    assert res.risk['exits']['stop'] == 1 and res.risk['exits']['take_profit'] == 1


def test_take_profit_fills_and_cancels_the_stop_a_gap_up_fills_at_the_open():
    for o4, h4, want in ((101., 105., 104.), (106., 107., 106.)):
        c = [100., 100., 100., 100., min(h4, 104.5), 104.]
        o = [100., 100., 100., 100., o4, 104.]
        data = frame(c, o, [100., 100., 100., 100., h4, 104.], None, symbol='X/USDT')
        res = bt({('X/USDT', 1): 'long'}, {'X/USDT': data}, risk=True)
        f, o_ = res.fills, res.orders
        tp, stop = o_[o_.order_type == 'limit'].iloc[0], o_[o_.order_type == 'stop'].iloc[0]
        assert (f.iloc[1].client_order_id, f.iloc[1].ts_event, f.iloc[1].price) == (tp.client_order_id, t(4), want)
        assert res.order_status[stop.client_order_id] == 'cancelled'
        assert res.trades.pnl.iloc[0] > 0 and res.positions == {}


def test_stock_stop_is_3pct_and_a_bar_through_both_never_opens_a_short():
    # a wide bar touches the stop and the take-profit; volume lets each order fill only part of the position
    c = [100., 100., 100., 100., 100., 100., 100.]
    data = frame(c, c, [100., 100., 100., 100., 107., 100., 100.], [100., 100., 100., 100., 96., 100., 100.],
                 volume=[1e6, 1e6, 1e6, 1e6, 600., 1e6, 1e6], symbol='STK')
    res = bt({('STK', 1): 'long'}, {'STK': data}, risk=True, quantity=100., max_volume_share=0.1, allow_short=True)
    o_ = res.orders
    stop = o_[o_.order_type == 'stop'].iloc[0]
    assert stop.stop_price == pytest.approx(97.) and o_[o_.order_type == 'limit'].iloc[0].limit_price == pytest.approx(106.)
    path = positions_path(res, 'STK')
    assert path[0] == 100. and min(path) >= 0. and path[-1] == 0.                # out, and never the other way
    assert (res.fills.ts_event.iloc[1:] == t(4)).all() and len(res.fills) == 3        # 60 at the stop, 40 at the take-profit
    assert list(res.fills.quantity.iloc[1:]) == [60., 40.]
    assert (res.trades.side == 'long').all()


def test_a_short_is_protected_the_other_way_and_a_gap_up_fills_at_the_open():
    c = [100., 100., 100., 100., 110., 110.]
    data = frame(c, c, None, None, symbol='STK')
    res = bt({('STK', 1): 'short'}, {'STK': data}, risk=True, allow_short=True)
    o_ = res.orders
    stop, tp = o_[o_.order_type == 'stop'].iloc[0], o_[o_.order_type == 'limit'].iloc[0]
    assert (stop.side, tp.side) == ('buy', 'buy') and stop.reduce_only and tp.reduce_only
    assert stop.stop_price == pytest.approx(103.) and tp.limit_price == pytest.approx(94.)     # 3% above, 2:1 below
    f = res.fills.iloc[1]
    assert (f.client_order_id, f.ts_event, f.price) == (stop.client_order_id, t(4), 110.)   # gapped over the stop: the open
    assert res.order_status[tp.client_order_id] == 'cancelled' and res.positions == {}
    assert max(positions_path(res, 'STK')) <= 0.                                          # covered, never turned long


def test_reduce_only_exits_and_a_strategy_exit_never_reverse(spy_1d):
    data = spy_1d.loc['2023-01':'2023-06']
    plan = {('SPY', k): ('long' if k % 9 == 1 else 'exit') for k in range(len(data)) if k % 9 in (1, 5)}
    res = backtest(Scripted(plan), {'SPY': data}, risk=risk_from_config(exits={'max_holding_bars': 3}), allow_short=True)
    path = positions_path(res, 'SPY')
    assert len(path) > 10 and min(path) >= 0.
    ro = set(res.orders[res.orders.reduce_only].client_order_id)
    for f in res.fills[res.fills.client_order_id.isin(ro)].itertuples():
        assert f.side == 'sell'


# -- per-bar exits ------------------------------------------------------------------------------------------------------

def _trailing_exit_bar(data, entry_k, mult, period):
    "Replica of the promise: ATR over every bar, best close since the entry bar, the level only ratchets, exit on a close below."
    atr, best, level = ATR(period), math.nan, math.nan
    for k, (h, l, c) in enumerate(zip(data.high, data.low, data.close)):
        a = atr.update(h, l, c)
        if k < entry_k or math.isnan(a): continue
        best = c if math.isnan(best) else max(best, c)
        lvl = best - mult*a
        level = lvl if math.isnan(level) else max(level, lvl)
        if c < level: return k
    return None


def test_atr_trailing_exit_sends_a_reduce_only_market_order_on_the_close():
    rng = np.random.default_rng(5)
    up = 100*np.exp(np.cumsum(np.r_[np.full(20, 0.004), np.full(15, -0.006)] + rng.normal(0, 0.002, 35)))
    data = frame(up, None, up*1.003, up*0.997, symbol='X/USDT')
    rules = ExitRules(trailing_atr_mult=2.0, atr_period=5)
    res = bt({('X/USDT', 6): 'long'}, {'X/USDT': data}, risk=RiskManager([], None, rules))
    k_exit = _trailing_exit_bar(data, 7, 2.0, 5)
    assert k_exit is not None and k_exit > 20
    ex = res.orders.iloc[1]
    assert (ex.order_type, ex.side, ex.reduce_only, ex.ts_event) == ('market', 'sell', True, data.index[k_exit])
    f = res.fills.iloc[1]
    assert (f.ts_event, f.price) == (data.index[k_exit + 1], data.open.iloc[k_exit + 1])   # the next bar's open
    assert res.risk['exits']['trailing'] == 1 and res.positions == {}


def test_time_exit_after_max_holding_bars():
    c = list(100 + np.arange(12)*0.1)
    data = frame(c, symbol='X/USDT')
    res = bt({('X/USDT', 1): 'long', ('X/USDT', 7): 'long'}, {'X/USDT': data}, risk=RiskManager([], None, ExitRules(max_holding_bars=3)))
    tr = res.trades
    assert len(tr) == 2 and (tr.holding == pd.Timedelta(hours=3)).all()                   # entered at bar 2's open, out at bar 5's
    ex = res.orders[res.orders.reduce_only]
    assert list(ex.ts_event) == [t(4), t(10)] and (ex.order_type == 'market').all()
    assert res.risk['exits']['time'] == 2


def test_exit_orders_pass_the_gate_halted_blocks_them():
    c = [100.]*4 + [100.]*8
    data = frame(c, symbol='X/USDT')
    rm = RiskManager([], None, ExitRules(max_holding_bars=2))
    class HaltAt(Scripted):
        def on_market_data(self, ev):
            if self.state(ev.symbol).k == 1: rm.halt('incident', by='ops', ts=ev.ts_event)   # on bar 2, after the entry filled
            return super().on_market_data(ev)
    res = backtest(HaltAt({('X/USDT', 1): 'long'}), {'X/USDT': data}, risk=rm, check_data=False, commission=0, slippage=0)
    assert res.risk['state'] == 'halted' and res.positions                                  # the time exit was refused
    assert (res.risk_alerts.rule == 'halted').any() and not res.orders.reduce_only.any()
    assert res.risk['exits']['time'] == 0


def test_a_refused_exit_while_halted_leaves_the_protective_stop_working():
    c = [100.]*6 + [90., 90.]
    data = frame(c, [100.]*6 + [90., 90.], None, None, symbol='X/USDT')
    rm = risk_from_config()
    class HaltThenExit(Scripted):
        def on_market_data(self, ev):
            if self.state(ev.symbol).k == 3: rm.halt('incident', by='ops', ts=ev.ts_event)
            return super().on_market_data(ev)
    res = backtest(HaltThenExit({('X/USDT', 1): 'long', ('X/USDT', 4): 'exit'}), {'X/USDT': data}, risk=rm, check_data=False,
                   commission=0, slippage=0)
    a = res.risk_alerts
    assert (a[a.rule == 'halted'].ts_event == t(4)).any()                                  # the strategy's exit: refused
    stop = res.orders[res.orders.order_type == 'stop'].iloc[0]
    tp = res.orders[res.orders.order_type == 'limit'].iloc[0]
    f = res.fills.iloc[-1]
    assert (f.client_order_id, f.ts_event, f.price) == (stop.client_order_id, t(6), 90.)  # the stop stayed and protected the position
    assert res.order_status[tp.client_order_id] == 'cancelled' and res.positions == {}    # cancels still happen while HALTED


# -- determinism ----------------------------------------------------------------------------------------------------------

def _same(runs):
    a = runs[0]
    for b in runs[1:]:
        assert b.fingerprint == a.fingerprint
        pd.testing.assert_frame_equal(b.trades, a.trades)
        assert b.risk == a.risk
        pd.testing.assert_frame_equal(b.risk_alerts.drop(columns='data'), a.risk_alerts.drop(columns='data'))


def test_replay_step_and_incremental_agree_with_the_default_layers(btc_1h):
    d = btc_1h.loc['2022']
    runs = [backtest('mean_reversion', d, symbols='BTC/USDT', risk=True, loop=loop, run_id='det') for loop in ('replay', 'step', 'incremental')]
    assert runs[0].metrics['n_trades'] > 50 and runs[0].risk['decisions']['resized'] > 0
    _same(runs)


def test_replay_step_and_incremental_agree_when_breakers_trip(btc_1h, eth_1h):
    data = {'BTC/USDT': btc_1h.loc['2022-05':'2022-07'], 'ETH/USDT': eth_1h.loc['2022-05':'2022-07']}
    cfg = RiskConfig(position=PositionLimits(max_position_pct=0.6, trailing_atr_mult=3.0, max_holding_bars=36),
                     symbol=SymbolLimits(0.6), portfolio=PortfolioLimits(max_invested_pct=0.9, correlation_window=30),
                     system=SystemLimits(daily_loss_limit_pct=0.01, max_drawdown_pct=0.25))
    runs = [backtest('momentum', data, risk=risk_from_config(cfg), fraction=0.5, loop=loop, run_id='det') for loop in ('replay', 'step', 'incremental')]
    r = runs[0]
    assert any(tr[1] == 'daily_loss' for tr in r.risk['trips']) and r.risk['exits']['trailing'] + r.risk['exits']['time'] > 0
    _same(runs)


# -- sizers inside backtests -----------------------------------------------------------------------------------------------

def test_risk_based_size_before_the_caps(btc_1h):
    d = btc_1h.loc['2023-03']
    plan = {('BTC/USDT', k): ('long' if k % 40 == 5 else 'exit') for k in range(len(d)) if k % 40 in (5, 25)}
    capped = backtest(Scripted(plan), d, symbols='BTC/USDT', sizer=RiskBased(0.01), risk=True)
    a = capped.risk_alerts[(capped.risk_alerts.rule == 'max_position_pct') & ~capped.risk_alerts.data.map(lambda x: bool(x.get('at_fill')))]
    assert len(a) >= 10
    for row in a.itertuples():
        v = row.data
        assert v['requested'] == pytest.approx(0.01*v['equity']/(0.02*v['price']), rel=1e-12)   # 1% of equity to a 2% stop: 50%
        assert v['quantity_after'] == pytest.approx(0.10*v['equity']/v['price'], rel=1e-12)      # ... capped at 10%
    free = backtest(Scripted({k: ('long', 0.5) if v == 'long' else v for k, v in plan.items()}), d, symbols='BTC/USDT',
                    sizer=RiskBased(0.01, {'crypto': 0.05, 'stock': 0.03}), commission=0, slippage=0)
    entries = free.orders[~free.orders.reduce_only]
    eq = free.equity
    for o in entries.itertuples():
        assert o.quantity == pytest.approx(0.5*0.01*eq.loc[o.ts_event]/(0.05*d.close.loc[o.ts_event]), rel=1e-12)


def test_risk_based_stock_size_floors_to_whole_shares(spy_1d):
    d = spy_1d.loc['2023-01':'2023-04']
    plan = {('SPY', k): ('long' if k % 20 == 3 else 'exit') for k in range(len(d)) if k % 20 in (3, 13)}
    res = backtest(Scripted(plan), d, symbols='SPY', sizer=RiskBased(0.001), commission=0, slippage=0)
    for o in res.orders.itertuples():
        if o.reduce_only: continue
        want = math.floor(0.001*res.equity.loc[o.ts_event]/(0.03*d.close.loc[o.ts_event]))
        assert o.quantity == want and want > 0


def test_atr_sized_waits_for_its_bars_then_risks_to_the_atr_stop(btc_1h):
    d = btc_1h.loc['2023-05-01':'2023-05-10']
    plan = {('BTC/USDT', 3): 'long', ('BTC/USDT', 8): 'exit', ('BTC/USDT', 30): 'long'}
    res = backtest(Scripted(plan), d, symbols='BTC/USDT', sizer=AtrSized(0.01, 2.0, 14), commission=0, slippage=0)
    a = res.risk_alerts
    assert list(a.rule) == ['zero_quantity'] and a.ts_event.iloc[0] == d.index[3]           # 4 bars: no ATR yet, no order
    [o] = res.orders.itertuples()
    h, l, c = (d[x].iloc[30 - 14:31].to_numpy() for x in ('high', 'low', 'close'))
    atr = np.maximum(h[1:] - l[1:], np.maximum(abs(h[1:] - c[:-1]), abs(l[1:] - c[:-1]))).mean()
    assert o.quantity == pytest.approx(0.01*res.initial_cash/(2.0*atr), rel=1e-9)


def _round_trips(n, win=True):
    "A long at bar 4k+1, an exit at 4k+3: prices rise (or fall) 1% between."
    c = []
    for k in range(n):
        c += [100., 100., 101. if win else 99., 100.]
    return frame(c + [100.]*4, symbol='X/USDT'), {**{('X/USDT', 4*k + 1): 'long' for k in range(n + 1)},
                                                  **{('X/USDT', 4*k + 2): 'exit' for k in range(n)}}


def test_kelly_warms_up_then_follows_the_trades():
    data, plan = _round_trips(5)
    res = bt(plan, {'X/USDT': data}, sizer=Kelly(0.5, 0.25, lookback=10, min_trades=4, warmup_fraction=0.02))
    entries = res.orders[~res.orders.reduce_only]
    assert len(entries) == 6 and (res.trades.pnl > 0).all()
    eq = res.equity
    for o in entries.iloc[:4].itertuples():                                                # before 4 closed trades: 2% of equity
        assert o.quantity == pytest.approx(0.02*eq.loc[o.ts_event]/100., rel=1e-12)
    for o in entries.iloc[4:].itertuples():                                                # all won: Kelly 1, half of it, capped at 25%
        assert o.quantity == pytest.approx(0.25*eq.loc[o.ts_event]/100., rel=1e-12)
    data, plan = _round_trips(5, win=False)
    res = bt(plan, {'X/USDT': data}, sizer=Kelly(0.5, 0.25, lookback=10, min_trades=4, warmup_fraction=0.02))
    assert len(res.orders[~res.orders.reduce_only]) == 4                                   # no edge after the warm-up: no size
    assert (res.risk_alerts.rule == 'zero_quantity').sum() == 2


# -- presets -------------------------------------------------------------------------------------------------------------

def test_presets_sizing_and_exits_from_config(btc_1h):
    from omegaconf import OmegaConf
    cfg = load_config(ROOT/'config')
    pre = {k: OmegaConf.to_container(v) for k, v in cfg.strategies.items()}
    mr = sizer_from_config(pre['mean_reversion_crypto']['sizing'], cfg.risk)
    assert isinstance(mr, RiskBased) and mr.account_risk == 0.01
    assert mr.stop('BTC/USDT', type('P', (), {'asset_types': {}})()) == 0.02                # the position layer's crypto stop
    mo = sizer_from_config(pre['momentum_crypto']['sizing'], cfg.risk)
    assert isinstance(mo, AtrSized) and (mo.account_risk, mo.atr_mult, mo.atr_period) == (0.01, 3.0, 14)
    st = sizer_from_config(pre['mean_reversion_stocks']['sizing'], cfg.risk)
    from quantsage.events import AssetType
    assert st.stop('SPY', type('P', (), {'asset_types': {'SPY': AssetType.STOCK}})()) == 0.03
    assert sizer_from_config(pre['sma_cross'].get('sizing'), cfg.risk) is None
    risk = risk_from_config(cfg.risk, exits=pre['mean_reversion_crypto']['exits'])
    assert risk.exits.max_holding_bars == 72 and risk.exits.take_profit_rr == 2.0
    p = pre['mean_reversion_crypto']
    res = backtest(p['strategy'], btc_1h.loc['2023'], symbols='BTC/USDT', sizer=mr, risk=risk, **p['params'])
    assert res.metrics['n_trades'] > 20
    assert (res.trades.holding <= pd.Timedelta(hours=72)).all()
    a = res.risk_alerts
    sized = a[(a.rule == 'max_position_pct') & ~a.data.map(lambda x: bool(x.get('at_fill')))]
    for v in sized.data:
        assert v['requested'] == pytest.approx(0.01*v['equity']/(0.02*v['price']), rel=1e-12)
    entries = res.fills[~res.fills.client_order_id.isin(res.orders[res.orders.reduce_only].client_order_id)]
    assert len(entries) > 20 and (entries.quantity*entries.price <= 0.10*res.equity.reindex(entries.ts_event).to_numpy()*1.01).all()


# -- instruments from ccxt -------------------------------------------------------------------------------------------------

def test_instrument_from_ccxt_via_the_real_client_and_fake_binance(binance, btc_1h):
    src = CCXTSource('binance', base_url=binance.url, clock=lambda: VENUE_NOW)
    markets = src.exchange.load_markets()
    assert binance.requests('/api/v3/exchangeInfo')                                        # it really asked the loopback venue
    ins = Instrument.from_ccxt(markets['BTC/USDT'], src.exchange.precisionMode)
    assert (ins.symbol, ins.lot_size, ins.tick_size, ins.min_quantity) == ('BTC/USDT', 1e-05, 0.01, 1e-05)
    assert ins.round_quantity(0.123456789) == pytest.approx(0.12345) and ins.round_quantity(0.000009) == 0.
    assert ins.round_price(123.456, up=True) == pytest.approx(123.46) and ins.round_price(123.456, up=False) == pytest.approx(123.45)
    res = backtest('mean_reversion', btc_1h.loc['2023-01':'2023-03'], symbols='BTC/USDT', risk=True, instruments={'BTC/USDT': ins})
    o = res.orders
    assert len(o) > 20
    lots = o.quantity/1e-05
    assert np.allclose(lots, np.round(lots), atol=1e-6)                                    # whole lots
    stops = o[o.order_type == 'stop']
    ticks = stops.stop_price/0.01
    assert np.allclose(ticks, np.round(ticks), atol=1e-6)                                  # on the tick grid
    f = res.fills
    entries = f[~f.client_order_id.isin(o[o.reduce_only].client_order_id)].drop_duplicates('client_order_id')
    for s in stops.itertuples():                                                           # rounded toward safety: at or above 98%
        e = entries[entries.ts_event == s.ts_event]
        if len(e): assert s.stop_price >= e.price.iloc[0]*0.98 - 1e-9 and s.stop_price - e.price.iloc[0]*0.98 < 0.01


# -- regressions from the review --------------------------------------------------------------------------------------

def test_a_flip_cancels_the_old_positions_stop_so_it_cannot_double_the_new_position():
    "Long 10, then a short signal: the flip's sell (20) replaces the long's resting stop; a bar through the old stop "
    "must not fill the stop *and* the flip (that would end -20, twice the sized short)."
    idx = __import__('tests.risk.harness', fromlist=['stock_sessions']).stock_sessions(6)
    c = [100., 100., 100., 100., 100., 100.]
    lows = [100., 100., 100., 100., 90., 100.]             # bar 4 trades through the long's 97 stop
    data = frame(c, None, None, lows, start=idx, symbol='X', asset_type='stock')
    res = bt({('X', 1): 'long', ('X', 3): 'short'}, {'X': data}, risk=RiskManager(exits=ExitRules({'stock': 0.03, 'crypto': 0.02})),
             quantity=10.)
    assert positions_path(res, 'X')[:2] == [10., -10.]     # the flip, at bar 4's open, from +10 to -10
    assert res.positions == {'X': -10.}
    first_stop = res.orders[res.orders.order_type == 'stop'].iloc[0]
    assert res.order_status[first_stop.client_order_id] == 'cancelled'


def test_a_time_exit_cancels_an_entry_still_filling():
    "An entry capped by the participation limit keeps filling across bars; the time exit must cancel it, or the "
    "position would outlive max_holding_bars."
    c = [100.]*10
    data = frame(c, volume=200., symbol='X/USDT')           # 10% of 200 = 20 units a bar
    res = bt({('X/USDT', 1): 'long'}, {'X/USDT': data}, risk=RiskManager(exits=ExitRules(max_holding_bars=2)),
             quantity=100., max_volume_share=0.1)
    entry = res.orders[~res.orders.reduce_only].iloc[0]
    assert res.order_status[entry.client_order_id] == 'cancelled'
    assert res.positions == {}                              # the exit sold everything the entry had bought
    assert res.risk['exits']['time'] >= 1

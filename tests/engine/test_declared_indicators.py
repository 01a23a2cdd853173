"""The engine side of declared indicators: strategies that declare none are left alone, names the engine calls cannot be
taken by parameters, a state saved without its indicators is refused rather than restored cold, nothing ahead of the bar
being replayed can be saved, and a caller's frozen objects stay frozen."""
import gc, json, math
import numpy as np, pandas as pd, pytest
from quantsage.core import ConfigError
from quantsage.engine.backtest import backtest
from quantsage.strategies import Strategy, get_strategy
from quantsage.indicators import SMA

def test_a_strategy_declaring_nothing_keeps_its_own_ind(btc_1h):
    class PrevClose(Strategy):                      # uses the attribute name `ind` for itself, declares no indicators
        def on_market_data(self, ev):
            prev, self.ind = self.ind, ev.close
            if prev is None: return None
            return self.long(ev) if ev.close > prev*1.004 else self.exit(ev) if ev.close < prev*0.996 else None
    data = btc_1h.loc['2023-01':'2023-03']
    fast = backtest(PrevClose, data, symbols='BTC/USDT', run_id='same')
    slow = backtest(PrevClose, data, symbols='BTC/USDT', run_id='same', loop='step')
    assert fast.metrics['n_trades'] > 50 and fast.fingerprint == slow.fingerprint

@pytest.mark.parametrize('name', ['step', 'indicators', 'ind', 'advance', 'symbols', 'name'])
def test_a_parameter_cannot_hide_what_the_engine_calls(name):
    Bad = type('Bad', (Strategy,), {'__annotations__': {name: float}, name: 1.0,
                                    'on_market_data': lambda self, ev: None})
    with pytest.raises(ConfigError, match=f"parameter name '{name}' is taken by Strategy.{name}; choose another name"):
        Bad()

def test_warmup_bars_may_be_a_parameter():
    class W(Strategy):
        warmup_bars: int = 50
        def on_market_data(self, ev): return None
    assert W(warmup_bars=60).warmup_bars == 60

def test_a_state_without_its_declared_indicators_is_refused():
    old = {'strategy': 'sma_cross', 'params': {'fast': 10, 'slow': 30},      # how the previous version saved sma_cross
           'symbols': {'BTC/USDT': {'fast': {'n': 10, 'buf': [1.0]*10, 'total': 10.0, 'since': 0},
                                    'slow': {'n': 30, 'buf': [1.0]*30, 'total': 30.0, 'since': 0}, 'prev': 0.0}}}
    with pytest.raises(ConfigError, match=r"keeps no declared indicators .* would start cross cold"):
        get_strategy('sma_cross')().set_state(old)
    fresh = {'strategy': 'sma_cross', 'params': {'fast': 10, 'slow': 30}, 'symbols': {}}   # saved before any bar: nothing to lose
    assert get_strategy('sma_cross')().set_state(fresh).get_state()['symbols'] == {}

def test_no_state_can_be_saved_mid_replay_and_afterwards_it_is_the_last_bars(btc_1h):
    seen = []
    class Saver(Strategy):
        def indicators(self): return {'avg': SMA(5)}
        def on_market_data(self, ev):
            if not seen:
                try: self.get_state()
                except RuntimeError as e: seen.append(str(e))
            return None
    data = btc_1h.loc['2023-01']
    s = Saver()
    backtest(s, data, symbols='BTC/USDT')
    assert seen and 'during a backtest\'s replay' in seen[0]
    window = s.get_state()['indicators']['BTC/USDT']['avg']['buf']
    assert window == data.close.iloc[-5:].tolist()                 # after the run: the state the last bar left
    s2 = Saver(); backtest(s2, data, symbols='BTC/USDT', loop='step')
    assert json.dumps(s2.get_state()) == json.dumps(s.get_state())

def test_a_callers_frozen_objects_stay_frozen(btc_1h):
    keep = [{'x': i} for i in range(1000)]
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        backtest('sma_cross', btc_1h.loc['2023-01'], symbols='BTC/USDT')
        assert before > 0 and gc.get_freeze_count() > 0.9*before          # not released by the run (a few may have died)
    finally:
        gc.unfreeze()
    assert keep

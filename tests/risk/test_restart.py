"""The trading state across restarts, on SQLite and PostgreSQL: a kernel with `risk_state=(store, scope)` restores the
state saved under the scope before its first bar and saves every change; a tripped breaker survives a restart (HALTED
stays HALTED: no order passes); the kill switch and the resume from the installed CLI, with its typed confirmation."""
import os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from typer.testing import CliRunner
from quantsage.cli import app
from quantsage.data.store import Store
from quantsage.events import OrderEvent, RiskAlertEvent
from quantsage.limits import risk_from_config
from quantsage.risk import TradingState
from .harness import Rig, Scripted, costs
from .test_stress import CRASH, IDX, SYMS, crash_data, deep_risk, plan

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name('quantsage'))


def later_data(start='2024-03-08 01:00', n=30, p=60.):
    "Quiet bars after the crash (a later session of the same account)."
    idx = pd.date_range(start, periods=n, freq='h', tz='UTC', name='ts')
    closes = p*(1 + 0.001*np.sin(np.arange(n)))
    return {s: pd.DataFrame({'open': np.r_[p, closes[:-1]], 'high': np.maximum(np.r_[p, closes[:-1]], closes) + 0.1,
                             'low': np.minimum(np.r_[p, closes[:-1]], closes) - 0.1, 'close': closes, 'volume': 1e9}, index=idx)
            for s in SYMS}


def session(url, scope, data, risk=None, entries=(2, 10), cash=100_000.):
    "One run of a fresh kernel and risk manager against the store: a restart, as far as the risk state goes."
    st = Store(url)
    rig = Rig(Scripted(plan(SYMS, entry=entries[0], again=entries[1:])), data, risk=risk or risk_from_config(), cash=cash,
              cost=costs(10.), risk_state=(st, scope))
    restored = rig.risk.state
    rig.restored = rig.risk.snapshot()
    rig.run()
    return rig, st, restored


def _sent(rig): return [e for e in rig.of(OrderEvent) if e.client_order_id in rig.broker.status]


def test_a_tripped_breaker_is_saved_and_survives_a_restart(backend_url):
    rig, st, restored = session(backend_url, 'acct-1', crash_data(), deep_risk(), entries=(2, CRASH + 3))
    assert restored is TradingState.ACTIVE                              # nothing saved yet under this scope
    assert rig.risk.state is TradingState.HALTED and rig.risk.rule == 'max_drawdown'
    saved = st.load_risk_state('acct-1')
    assert saved is not None and saved['state'] == 'halted' and saved['rule'] == 'max_drawdown'
    assert saved['trips'] == rig.risk.snapshot()['trips'] and saved['peak'] == pytest.approx(rig.risk.peak)
    st.close()
    again, st2, restored2 = session(backend_url, 'acct-1', later_data())            # a new kernel, a new manager
    assert restored2 is TradingState.HALTED                              # restored before the first bar
    assert again.risk.state is TradingState.HALTED
    assert _sent(again) == [] and again.broker.status == {}              # no order passes
    refused = [e for e in again.of(RiskAlertEvent) if e.rule == 'halted']
    assert len(refused) == 2*len(SYMS)
    assert st2.load_risk_state('acct-1')['state'] == 'halted'
    other, st3, restored3 = session(backend_url, 'acct-2', later_data())            # another scope is not affected
    assert restored3 is TradingState.ACTIVE and len(_sent(other)) >= len(SYMS)
    st2.close(); st3.close()


def test_every_change_is_saved_as_it_happens(tmp_path):
    url = f"sqlite:///{tmp_path}/s.sqlite"
    st = Store(url)
    rig = Rig(Scripted(plan(SYMS, again=(CRASH + 3,))), crash_data(), risk=deep_risk(), cost=costs(10.), risk_state=(st, 'acct'))
    reader = Store(url)                                                   # another connection: what a restart would read
    checked = []
    def probe(ev):                                                        # every bar, after the kernel's own handlers
        snap = reader.load_risk_state('acct')
        stored = 'active' if snap is None else snap['state']
        assert stored == rig.risk.state.value, f"at {ev.ts_event}: stored {stored}, running {rig.risk.state.value}"
        checked.append(stored)
    rig.bus.subscribe('market_data', probe)
    rig.run()
    assert checked[-1] == 'halted' and 'reducing' not in checked[-1:] and len(checked) == sum(len(f) for f in crash_data().values())
    snap = reader.load_risk_state('acct')
    assert snap['n_changes'] == rig.risk.snapshot()['n_changes'] == 2 and snap['trips'] == rig.risk.snapshot()['trips']
    reader.close(); st.close()


def test_reducing_survives_a_restart_the_same_day_and_ends_with_it(backend_url):
    first = {s: f.iloc[:CRASH + 1] for s, f in crash_data().items()}      # the run ends on the crash bar: REDUCING
    rig, st, _ = session(backend_url, 'acct-r', first, risk_from_config())
    assert rig.risk.state is TradingState.REDUCING
    st.close()
    rest = {s: f.iloc[CRASH + 1:] for s, f in crash_data().items()}       # restart later that day
    again, st2, restored = session(backend_url, 'acct-r', rest, risk_from_config(), entries=(1, 20))
    assert restored is TradingState.REDUCING
    same_day = [e for e in again.of(RiskAlertEvent) if e.rule == 'reducing']
    assert {e.symbol for e in same_day} == set(SYMS)                     # the same day's entries: refused
    sent = _sent(again)
    assert sent and all(pd.Timestamp(o.ts_event, unit='ns', tz='UTC') >= pd.Timestamp('2024-03-06', tz='UTC') for o in sent)
    assert st2.load_risk_state('acct-r')['state'] == 'active'           # re-armed by the new day, and saved
    st2.close()


def _cli(*args, input=None):
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=input, cwd=ROOT, timeout=120,
                          env=dict(os.environ, NO_COLOR='1', COLUMNS='200'))


def test_kill_switch_from_the_cli_stops_the_next_session_and_resume_needs_the_typed_word(tmp_path):
    url = f"sqlite:///{tmp_path}/k.sqlite"
    Store(url).close()
    out = _cli('halt', '--reason', 'venue incident', '--scope', 'acct-k', '--by', 'ada', '--db-url', url)
    assert out.returncode == 0, out.stderr
    assert 'acct-k: HALTED' in out.stdout and 'venue incident' in out.stdout
    with Store(url) as st:
        snap = st.load_risk_state('acct-k')
        assert (snap['state'], snap['rule']) == ('halted', 'manual_halt') and 'ada' in snap['reason']
        assert list(st.read_table('risk_events', run_id='acct-k').rule) == ['manual_halt']   # the event is stored with it
    rig, st, restored = session(url, 'acct-k', later_data())
    assert restored is TradingState.HALTED and _sent(rig) == []          # the running book obeys it
    st.close()
    runner = CliRunner()
    no = runner.invoke(app, ['resume', '--reason', 'checked', '--scope', 'acct-k', '--by', 'ada', '--db-url', url], input='resume\n')
    assert no.exit_code == 1 and 'not confirmed' in no.output
    assert Store(url).load_risk_state('acct-k')['state'] == 'halted'    # a wrong word changes nothing
    ok = runner.invoke(app, ['resume', '--reason', 'checked', '--scope', 'acct-k', '--by', 'ada', '--db-url', url], input='RESUME\n')
    assert ok.exit_code == 0, ok.output
    assert 'type RESUME' in ok.output and 'acct-k: ACTIVE' in ok.output
    snap = Store(url).load_risk_state('acct-k')
    assert (snap['state'], snap['rule']) == ('active', 'manual_resume') and 'ada' in snap['reason']
    rig, st, restored = session(url, 'acct-k', later_data())
    assert restored is TradingState.ACTIVE and len(_sent(rig)) >= len(SYMS)   # orders pass again
    st.close()


def test_resume_with_yes_in_a_subprocess_and_nothing_to_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/y.sqlite"
    rig, st, _ = session(url, 'acct-y', crash_data(), deep_risk())
    assert st.load_risk_state('acct-y')['state'] == 'halted'
    st.close()
    out = _cli('resume', '--reason', 'reviewed the crash', '--scope', 'acct-y', '--yes', '--db-url', url)
    assert out.returncode == 0, out.stderr
    assert 'acct-y: ACTIVE' in out.stdout and 'type RESUME' not in out.stdout
    with Store(url) as st:
        snap = st.load_risk_state('acct-y')
        assert snap['state'] == 'active' and snap['peak'] == pytest.approx(rig.risk.last_equity)   # the peak re-armed at the last equity
    res = CliRunner().invoke(app, ['resume', '--reason', 'again', '--scope', 'acct-y', '--yes', '--db-url', url])
    assert res.exit_code == 0 and 'nothing to resume' in res.output
    again, st2, restored = session(url, 'acct-y', later_data())
    assert restored is TradingState.ACTIVE and again.restored['peak'] == pytest.approx(rig.risk.last_equity)
    assert len(_sent(again)) >= len(SYMS)
    st2.close()


def test_a_halt_from_the_cli_during_a_session_is_adopted_not_overwritten(tmp_path):
    "A running session saves its own state changes (here: each new trading day). A `quantsage halt` written to the store "
    "in between must win: the session adopts it (and cancels its working entries) instead of overwriting it."
    url = f"sqlite:///{tmp_path}/kill.sqlite"
    st = Store(url)
    rig = Rig(Scripted(plan(SYMS, entry=2, again=(30, 50))), crash_data(), risk=risk_from_config(), cash=100_000.,
              cost=costs(10.), risk_state=(st, 'live-1'))
    halted_at = None
    def halt_from_outside(ev):
        nonlocal halted_at
        if halted_at is None and ev.ts_event >= IDX[20].value:          # the CLI, another process, mid-session
            r = CliRunner().invoke(app, ['halt', '--reason', 'venue incident', '--scope', 'live-1', '--by', 'ops', '--db-url', url])
            assert r.exit_code == 0, r.output
            halted_at = ev.ts_event
    from quantsage.events import Topic
    rig.bus.subscribe(Topic.MARKET_DATA, halt_from_outside)
    rig.run('step')
    saved = st.load_risk_state('live-1')
    assert halted_at is not None
    assert saved['state'] == 'halted' and saved['rule'] == 'manual_halt'       # the day rolls after it did not overwrite it
    assert rig.risk.state is TradingState.HALTED and 'halted by ops: venue incident' in rig.risk.reason
    late = [o for o in _sent(rig) if not o.reduce_only and o.ts_event > IDX[26].value]   # the next day began at IDX[23]
    assert late == []                                                   # no entry reached the broker after the adoption
    st.close()

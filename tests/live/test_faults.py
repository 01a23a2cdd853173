"""Faults from the catalogue of ../shared/RELIABILITY.md §2 against the live order path: the real ccxt client, the loopback
Binance with scripted faults, a real SQLite store, crashes at named points (in-process here; SIGKILL in
test_crash_points.py). Every scenario ends with the invariant checker."""
import sqlalchemy as sa, pandas as pd, pytest
from quantsage.core import ConfigError
from quantsage.events import OrderEvent
from quantsage.execution.live import LiveBroker, OrderOutbox
from quantsage.live import ReconciliationError
from tests.venues.fake_venue import Fault
from .conftest import run, session, check_invariants, venue

def orders_at_venue(fv): return len(fv.orders)

def test_a_clean_session_matches_the_venue(fv, store, hourly):
    assert not run(fv, store, hourly)
    orders, trades = check_invariants(store, fv)
    assert len(fv.orders) >= 6 and len(trades) == len(fv.trades)
    st = store.load_session_state('s1')
    assert st['last_bar'] == int((hourly.index[-1] + pd.Timedelta('1h')).value)
    assert set(orders.status) <= {'filled', 'canceled', 'held'}

@pytest.mark.parametrize('point', ['after_intent_commit', 'after_http_send', 'after_fill_apply', 'after_status_persist',
                                   'before_session_save', 'after_session_save'])
def test_F01_F02_crash_in_the_order_path_then_restart(fv, store, hourly, point):
    "F01 (intent stored, not sent) and F02 (sent, reply not stored) and the points around them: one venue order per id."
    assert run(fv, store, hourly, crash=point, n=2)
    assert not run(fv, store, hourly)
    orders, _ = check_invariants(store, fv)
    s = session(fv, store, hourly); s.recover()
    assert s.report.ok and abs(s.a.kernel.portfolio.quantity('BTC/USDT') - fv.position('BTC')) < 1e-9

def test_F01_the_intent_is_sent_under_its_own_id_when_its_bar_decides_it_again(fv, store, hourly):
    assert run(fv, store, hourly, crash='after_intent_commit', n=1)
    first = store.read_table('orders', run_id='s1')
    assert len(first) == 1 and first.status[0] == 'intent' and len(fv.orders) == 0
    assert not run(fv, store, hourly)
    check_invariants(store, fv)
    assert fv.orders[0].client_order_id == first.client_order_id[0]          # the same id, not a new one

def test_F03_crash_after_3_of_5_fills_pulls_the_rest_once(fv, store, hourly):
    fv.faults_trading.fills_per_order = 5
    assert run(fv, store, hourly, crash='mid_fill_apply', n=3)
    assert len(store.read_table('trades', run_id='s1')) == 3
    assert not run(fv, store, hourly)
    _, trades = check_invariants(store, fv)
    first = trades[trades.client_order_id == fv.orders[0].client_order_id]
    assert len(first) == 5 and abs(first.quantity.sum() - fv.orders[0].quantity) < 1e-12

def test_F06_a_position_the_store_does_not_know_fails_closed(fv, store, hourly):
    fv.balances['BTC'] = 0.25                                                  # bought by hand at the venue
    with pytest.raises(ReconciliationError, match=r"BTC/USDT: stored 0, venue 0.25: MISMATCH"):
        session(fv, store, hourly).run_sync()
    assert len(fv.orders) == 0 and store.read_table('orders').empty            # no strategy ran, nothing was sent
    s = session(fv, store, hourly, on_mismatch='adopt'); s.run_sync()
    _, trades = check_invariants(store, fv)                                   # the adopted 0.25 is a stored external fill
    assert trades.fill_id.str.startswith("external:").sum() == 1
    assert abs(s.a.kernel.portfolio.quantity('BTC/USDT') - fv.position('BTC')) < 1e-9

def test_F06_a_stored_position_the_venue_does_not_hold_fails_closed(fv, store, hourly):
    assert not run(fv, store, hourly, max_bars=53)                           # just after the first entry filled
    held = fv.position('BTC')
    assert held > 0
    fv.balances['BTC'] = 0.0                                                   # sold elsewhere
    with pytest.raises(ReconciliationError, match='MISMATCH'):
        session(fv, store, hourly).run_sync()

def test_F07_timeout_after_the_venue_took_the_order(fv, store, hourly):
    fv.faults_trading.create.append('commit_then_timeout')
    assert not run(fv, store, hourly)
    orders, _ = check_invariants(store, fv)
    first = orders.sort_values('ts_init').iloc[0]
    assert first.status == 'filled' and first.metadata['error_class'] == 'ambiguous'
    assert first.metadata['resolved'] == 'found by client order id' and len(fv.creates(first.client_order_id)) == 1

def test_F08_timeout_before_the_venue_took_it_is_abandoned_not_resent(fv, store, hourly):
    fv.faults_trading.create.append('timeout_before_commit')
    assert not run(fv, store, hourly)
    orders, _ = check_invariants(store, fv)
    lost = orders[orders.status == 'abandoned']
    assert len(lost) == 1 and 'not a venue rejection' in lost.metadata.iloc[0]['resolved']
    assert len(fv.creates(lost.client_order_id.iloc[0])) == 1

def test_F08_an_order_that_appears_late_is_found_not_resent(fv, store, hourly):
    fv.faults_trading.create.append('late_commit'); fv.faults_trading.late_s = 1.5
    assert not run(fv, store, hourly, absence_wait_s=4.0, unknown_policy='resend')
    orders, _ = check_invariants(store, fv)
    cid = fv.creates()[0].query['newClientOrderId']
    assert len(fv.creates(cid)) == 1 and len(fv.orders_for(cid)) == 1
    assert orders.set_index('client_order_id').loc[cid].status == 'filled'

def test_F08_resend_policy_sends_the_same_id_after_absence_is_proven(fv, store, hourly):
    fv.faults_trading.create.append('timeout_before_commit')
    assert not run(fv, store, hourly, unknown_policy='resend')
    check_invariants(store, fv)
    cid = fv.creates()[0].query['newClientOrderId']
    assert len(fv.creates(cid)) == 2 and len(fv.orders_for(cid)) == 1

def test_F09_429_on_an_order_waits_for_the_reset_then_looks_up_then_sends_the_same_id(fv, store, hourly):
    fv.plan('POST /api/v3/order', Fault.http(429, **{'Retry-After': '1'}))
    assert not run(fv, store, hourly)
    check_invariants(store, fv)
    first, second = fv.creates()[:2]
    cid = first.query['newClientOrderId']
    assert second.query['newClientOrderId'] == cid and second.t - first.t >= 1.0
    lookups = [r for r in fv.log if r.method == 'GET' and r.path == '/api/v3/order' and r.query.get('origClientOrderId') == cid]
    assert lookups and first.t < lookups[0].t < second.t

def test_F10_504_after_the_venue_took_the_order_gives_one_order(fv, store, hourly):
    fv.faults_trading.create.append('commit_then_504')
    assert not run(fv, store, hourly)
    check_invariants(store, fv)
    cid = fv.creates()[0].query['newClientOrderId']
    assert len(fv.creates(cid)) == 1

def test_F11_an_order_invisible_right_after_create_is_not_taken_for_lost(fv, store, hourly):
    fv.faults_trading.create.append('commit_then_timeout'); fv.faults_trading.hide_s = 2.0
    assert not run(fv, store, hourly, absence_wait_s=5.0)
    orders, _ = check_invariants(store, fv)
    assert 'abandoned' not in set(orders.status)

def test_F12_fills_reported_twice_are_applied_once(fv, store, hourly):
    fv.faults_trading.duplicate_trades = True; fv.faults_trading.fills_per_order = 3
    assert run(fv, store, hourly, crash='mid_fill_apply', n=2)                  # the rest come from the (doubled) trades endpoint
    assert not run(fv, store, hourly)
    check_invariants(store, fv)

def test_F14_a_cancel_that_races_a_fill_ends_filled(fv, store, hourly):
    fv.faults_trading.fill_on_cancel = True
    ob = OrderOutbox(store, 'c1', 'ccxt:binance'); got = []
    b = LiveBroker(venue(fv), ob, got.append)
    o = OrderEvent('qs-limit-entry-1', 'BTC/USDT', 'buy', 0.01, 'limit', 1, 1, 30_000.0)   # rests: the market is far above
    b.on_order(o)
    assert b.status[o.client_order_id] == 'open'
    assert b.cancel(o.client_order_id) is False                                 # the venue filled it first
    assert b.status[o.client_order_id] == 'filled' and len(got) == 1 and abs(fv.position('BTC') - got[0].quantity) < 1e-12
    assert ob.orders()[0]['status'] == 'filled'

def test_F17_a_key_refused_mid_session_halts_after_a_bounded_number_of_spaced_attempts(fv, store, hourly):
    "After a successful login ccxt reads Binance's -2015 as a temporary ban (DDoSProtection): waited out, looked up, 3 tries, then HALTED."
    body = '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'
    fv.plan('POST /api/v3/order', *[Fault.http(401, body)]*10)         # order POSTs only; reads still work
    s = session(fv, store, hourly); s.run_sync()
    assert s.broker.halted and 'refused order' in s.broker.halted
    posts = fv.creates()
    assert len(posts) == 3 and len(fv.orders) == 0                              # bounded, and nothing after the halt
    assert all(b.t - a.t >= 1.0 for a, b in zip(posts, posts[1:]))              # no tight loop
    assert s.a.kernel.portfolio.risk.state.value == 'halted' and store.load_risk_state('s1')['state'] == 'halted'
    orders, _ = check_invariants(store, fv)
    assert orders.status.tolist() == ['rejected'] and orders.metadata[0]['attempts'] == 3

def test_F17_a_refused_key_at_startup_starts_nothing(fv, store, hourly):
    fv.auth_fail = True
    with pytest.raises(Exception, match='auth'):
        session(fv, store, hourly).run_sync()
    assert len(fv.creates()) == 0 and store.read_table('orders').empty

def test_F18_a_venue_rejection_is_recorded_once(fv, store, hourly):
    fv.plan('POST /api/v3/order', Fault.http(400, '{"code":-2010,"msg":"Account has insufficient balance for requested action."}'))
    s = session(fv, store, hourly); s.run_sync()
    orders = store.read_table('orders', run_id='s1')
    rejected = orders[orders.status == 'rejected']
    assert len(rejected) == 1 and all(len(fv.creates(c)) == 1 for c in rejected.client_order_id)     # once, never retried
    assert 'insufficient balance' in rejected.metadata.iloc[0]['last_error'] and rejected.metadata.iloc[0]['error_class'] == 'rejected'
    assert s.a.kernel.portfolio.risk.state.value == 'active'                    # a rejection is not a reason to halt
    check_invariants(store, fv)

def test_F27_disk_full_stops_the_session_and_a_restart_recovers(fv, store, hourly):
    from quantsage.core import StorageError
    s = session(fv, store, hourly)
    with store.connect() as c: pages = c.exec_driver_sql('PRAGMA page_count').scalar()
    full = lambda dbapi, _: dbapi.execute(f'PRAGMA max_page_count = {pages + 3}')   # SQLite's own SQLITE_FULL, a few pages on
    sa.event.listen(store.engine, 'connect', full)
    with pytest.raises(StorageError, match='database or disk is full'):
        s.run_sync()
    stored = set(store.read_table('orders', run_id='s1').client_order_id)
    assert {o.client_order_id for o in fv.orders} <= stored                    # nothing at the venue without its intent stored
    with store.connect() as c: assert c.exec_driver_sql('PRAGMA integrity_check').scalar() == 'ok'
    sa.event.remove(store.engine, 'connect', full); store.engine.dispose()       # space again: restart = recovery
    assert not run(fv, store, hourly)
    check_invariants(store, fv)

def test_a_halt_from_the_kill_switch_survives_a_restart_and_nothing_is_sent(fv, store, hourly):
    from quantsage.limits import risk_from_config
    assert not run(fv, store, hourly, max_bars=30)
    r = risk_from_config(); r.halt('operator', by='test')
    store.save_risk_state('s1', r.snapshot())
    n = len(fv.creates())
    assert not run(fv, store, hourly)
    assert len(fv.creates()) == n                                               # HALTED: no order left for the venue
    assert store.load_risk_state('s1')['state'] == 'halted'

def test_F15_clock_skew_is_resynced_once_and_trading_goes_on(fv, store, hourly):
    fv.clock_skew_ms = 60_000                                                   # the venue's clock is a minute ahead of ours
    assert not run(fv, store, hourly)
    check_invariants(store, fv)
    assert len([r for r in fv.log if r.path == '/api/v3/time']) == 1            # one resync, no hammering
    assert len(fv.orders) >= 6

def test_F15_a_skew_that_a_resync_cannot_fix_stops_the_start(fv, store, hourly):
    fv.clock_skew_ms = 60_000
    fv.routes[('GET', '/api/v3/time')] = lambda q, b: (200, {'serverTime': int(__import__('time').time()*1000)})   # a lying clock
    with pytest.raises(Exception, match='InvalidNonce|recvWindow'):
        session(fv, store, hourly).run_sync()
    assert len(fv.creates()) == 0 and len([r for r in fv.log if r.path == '/api/v3/time']) == 1

def test_F16_maintenance_mid_session_ends_with_every_order_resolved(fv, store, hourly):
    import threading
    orig = fv._create
    def create(p):                                                              # maintenance starts with the third order
        if len(fv.orders) == 2 and not fv.maintenance_until: fv.maintenance_for(1.5)
        return orig(p)
    fv._create = create
    fv.routes[('POST', '/api/v3/order')] = fv._signed(fv._create)
    assert not run(fv, store, hourly)
    orders, _ = check_invariants(store, fv)
    assert fv.maintenance_until and len(fv.orders) >= 6

@pytest.mark.parametrize('damage', ['truncated', 'garbled'])
def test_F28_a_damaged_database_starts_nothing(fv, store, hourly, tmp_path, damage):
    import os, shutil
    from quantsage.core import StorageError
    from quantsage.data.store import Store
    assert not run(fv, store, hourly, max_bars=100)
    store.close()
    path = store.url.database
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        if damage == 'truncated': f.truncate(size//2)
        else: f.seek(size//2); f.write(b'\xa5'*4096)
    posts = len(fv.creates())
    with pytest.raises(StorageError, match='integrity check|not a usable database'):
        session(fv, Store(f"sqlite:///{path}"), hourly).run_sync()
    assert len(fv.creates()) == posts                                           # nothing sent from a damaged ledger

def test_F29_a_locked_database_sends_nothing_unrecorded_and_a_restart_recovers(fv, store, hourly):
    "Another process holds SQLite's write lock mid-session: the next write fails after a bounded wait, nothing unrecorded is sent."
    import sqlite3, threading
    from quantsage.core import StorageError
    sa.event.listen(store.engine, 'connect', lambda dbapi, _: dbapi.execute('PRAGMA busy_timeout = 300'))   # the bounded wait, shortened
    s = session(fv, store, hourly)
    other = sqlite3.connect(store.url.database, isolation_level=None, check_same_thread=False)
    orig = fv._create
    def create(p):                                                               # after the second order, the lock is taken
        r = orig(p)
        if len(fv.orders) == 2 and not other.in_transaction: other.execute('BEGIN EXCLUSIVE')
        return r
    fv._create = create
    with pytest.raises(StorageError, match='locked'):
        s.run_sync()
    other.execute('ROLLBACK'); other.close()
    stored = set(store.read_table('orders', run_id='s1').client_order_id)
    assert {o.client_order_id for o in fv.orders} <= stored                      # every venue order has its intent stored
    assert len(fv.orders) == 2
    fv._create = orig
    assert not run(fv, store, hourly)                                            # the lock gone: restart = recovery
    check_invariants(store, fv)

def test_F12_fills_reported_out_of_order_are_applied_once_each(fv, store, hourly):
    fv.faults_trading.reversed_trades = True; fv.faults_trading.fills_per_order = 4
    assert run(fv, store, hourly, crash='mid_fill_apply', n=2)                  # the rest come newest first from the trades endpoint
    assert not run(fv, store, hourly)
    _, trades = check_invariants(store, fv)
    first = trades[trades.client_order_id == fv.orders[0].client_order_id]
    assert len(first) == 4 and abs(first.quantity.sum() - fv.orders[0].quantity) < 1e-12

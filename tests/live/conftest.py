"""The live order path against the loopback Binance (`tests/venues/fake_venue.py`) with the real ccxt client and a real
SQLite store: one session helper, and the invariant checker of ../shared/RELIABILITY.md §2.1 run after every scenario."""
from collections import Counter
import pandas as pd, pytest
from quantsage.config import Secret
from quantsage.data.store import Store
from quantsage.execution.venues import CCXTVenue
from quantsage.execution.live import SimulatedCrash, crash_at
from quantsage.live import LiveSession
from quantsage.testing import shared_data
from tests.venues.fake_venue import FakeBinanceTrading

KEY, SECRET = 'QSCANARY-binance-key-7f3a9c', 'QSCANARY-binance-secret-51d2e8'
PARAMS = dict(fast=5, slow=20, fraction=0.5)

@pytest.fixture(scope='session')
def hourly():
    raw = pd.read_csv(shared_data('binance_BTCUSDT_1h.csv'), index_col='timestamp')
    raw.index = pd.to_datetime(raw.index, utc=True)
    return raw.loc['2024-01-01':'2024-01-12']                      # open-stamped, as the venue serves them

@pytest.fixture
def fv(hourly):
    with FakeBinanceTrading({'BTCUSDT': hourly}, now=pd.Timestamp('2024-03-01', tz='UTC'), key=KEY, secret=SECRET, cash=50_000,
                            client_timeout_s=1.0) as v:
        yield v

@pytest.fixture
def store(tmp_path):
    st = Store(f"sqlite:///{tmp_path}/live.sqlite")
    yield st
    st.close()

def venue(fv, timeout_ms=1000):
    return CCXTVenue('binance', api_key=Secret('BINANCE_API_KEY', KEY), secret=Secret('BINANCE_SECRET', SECRET), base_url=fv.url,
                     timeout_ms=timeout_ms, rate_limit=False)

def session(fv, store, hourly, sid='s1', **kw):
    bars = hourly.set_axis(hourly.index + pd.Timedelta('1h'))     # QuantSage keeps bars stamped at their close
    opts = dict(PARAMS, absence_wait_s=1.5, not_found_lookups=3)
    opts.update(kw)
    v = venue(fv, opts.pop('timeout_ms', 1000))
    return LiveSession('sma_cross', {'BTC/USDT': bars}, venue=v, store=store, session_id=sid, **opts)

def run(fv, store, hourly, sid='s1', crash=None, n=1, **kw):
    "Run a session to the end; with `crash`, until that crash point (then every in-memory object is dropped). True if it crashed."
    with crash_at(crash, n):
        try: session(fv, store, hourly, sid, **kw).run_sync(); return False
        except SimulatedCrash: return True

def check_invariants(store, fv, sid='s1', base='BTC', holdings=0.0):
    "RELIABILITY.md §2.1, 1-4 (6, the canary, in test_secrets_never_stored)."
    orders = store.read_table('orders', run_id=sid)
    trades = store.read_table('trades', run_id=sid)
    mine = set(orders.client_order_id)
    # 1. each client order id maps to at most one order at the venue
    per_cid = Counter(o.client_order_id for o in fv.orders)
    assert max(per_cid.values(), default=0) <= 1, {c: n for c, n in per_cid.items() if n > 1}
    # 2. the local ledger equals the venue's: the same trades (by id), the same position
    venue_ids = {o.order_id for o in fv.orders if o.client_order_id in mine}
    venue_trades = {f"ccxt:binance:{t.trade_id}" for t in fv.trades if t.order_id in venue_ids}
    local_trades = {f for f in trades.fill_id if not f.startswith('external:')}
    assert local_trades == venue_trades, (sorted(local_trades ^ venue_trades))
    signed = (trades.quantity*trades.side.map({'buy': 1, 'sell': -1})).sum()
    assert abs(holdings + signed - fv.position(base)) < 1e-9, (holdings, signed, fv.position(base))
    # 3. no order left in an unknown or in-flight state
    assert not set(orders.status) & {'intent', 'unknown'}, orders[['client_order_id', 'status', 'metadata']].to_string()
    # 4 (G4). no create for an id that had one before, unless a lookup by that id came in between
    seen, last_create = {}, {}
    for i, r in enumerate(fv.log):
        if r.method == 'POST' and r.path == '/api/v3/order':
            cid = r.query.get('newClientOrderId')
            if cid in last_create:
                assert any(x.method == 'GET' and x.path == '/api/v3/order' and x.query.get('origClientOrderId') == cid
                           for x in fv.log[last_create[cid] + 1:i]), f"{cid} sent again without a lookup"
            last_create[cid] = i
    return orders, trades

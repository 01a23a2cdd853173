"""The same live order path on Alpaca: alpaca-py's TradingClient (its own retries switched off) against the loopback
Alpaca, on replayed SPY daily bars. Alpaca would re-send POST /v2/orders after a 504 by default; here a 504 after the
venue took the order is an unknown outcome, resolved by the client order id, and the venue sees one POST."""
import pandas as pd, pytest
from quantsage.config import Secret
from quantsage.data.sources import read_bar_file
from quantsage.data.store import Store
from quantsage.execution.venues import AlpacaVenue
from quantsage.live import LiveSession
from quantsage.testing import shared_data
from tests.venues.fake_venue import FakeAlpacaTrading, Fault

KEY, SECRET = 'PKQSCANARY00000001', 'QSCANARY-alpaca-secret-9b1c'

@pytest.fixture(scope='module')
def spy():
    return read_bar_file(shared_data('us_SPY_1d_adj.csv'), '1d', 'session', 'XNYS').loc['2023-01-01':'2023-09-30']

@pytest.fixture
def fa():
    raw = pd.read_csv(shared_data('us_SPY_1d_adj.csv'), index_col='timestamp'); raw.index = pd.to_datetime(raw.index, utc=True)
    with FakeAlpacaTrading({'SPY': raw}, key=KEY, secret=SECRET, cash=100_000) as v: yield v

def session(fa, store, spy, **kw):
    v = AlpacaVenue(api_key=Secret('APCA_API_KEY_ID', KEY), secret=Secret('APCA_API_SECRET_KEY', SECRET), base_url=fa.url)
    return LiveSession('sma_cross', {'SPY': spy}, venue=v, store=store, session_id='a1', fast=5, slow=20, fraction=0.5,
                       absence_wait_s=0.5, **kw)

def ledger_matches(store, fa):
    orders = store.read_table('orders', run_id='a1'); trades = store.read_table('trades', run_id='a1')
    cids = [o['client_order_id'] for o in fa.orders]
    assert len(cids) == len(set(cids))                                                      # one venue order per client order id
    assert not set(orders.status) & {'intent', 'unknown'}
    signed = (trades.quantity*trades.side.map({'buy': 1, 'sell': -1})).sum()
    assert abs(signed - fa.positions.get('SPY', 0.0)) < 1e-9
    assert {o['client_order_id'] for o in fa.orders} <= set(orders.client_order_id)
    return orders, trades

def test_a_session_at_alpaca_matches_its_ledger(fa, tmp_path, spy):
    with Store(f"sqlite:///{tmp_path}/a.sqlite") as st:
        s = session(fa, st, spy); s.run_sync()
        orders, trades = ledger_matches(st, fa)
        assert len(fa.orders) >= 4 and len(trades) == len(fa.orders)
        assert abs(s.status['cash'] - fa.cash) < 1e-6
        assert s.broker.venue.client._retry == 0

def test_a_504_after_alpaca_took_the_order_is_resolved_by_lookup_not_resent(fa, tmp_path, spy):
    fa.create.append('commit_then_504')
    with Store(f"sqlite:///{tmp_path}/a.sqlite") as st:
        session(fa, st, spy).run_sync()
        orders, _ = ledger_matches(st, fa)
        first = orders.sort_values('ts_init').iloc[0]
        assert first.metadata['error_class'] == 'ambiguous' and first.metadata['resolved'] == 'found by client order id'
        posts = [r for r in fa.log if r.method == 'POST' and r.path == '/v2/orders']
        assert len(posts) == len(fa.orders)                                                  # alpaca-py did not re-send it

def test_a_refused_key_at_alpaca_halts(fa, tmp_path, spy):
    fa.create.append(Fault.http(401, '{"code":40110000,"message":"request is not authorized"}'))
    with Store(f"sqlite:///{tmp_path}/a.sqlite") as st:
        s = session(fa, st, spy); s.run_sync()
        assert s.broker.halted and 'refused the API key' in s.broker.halted and len(fa.orders) == 0
        assert st.load_risk_state('a1')['state'] == 'halted'

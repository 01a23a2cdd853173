"""A live session on a live feed: the real CCXTSource polling the loopback Binance, whose clock the test moves one hour per
poll. Only closed bars reach the strategy (F23), its signals equal the backtest's on the same bars, a bad bar is quarantined
(F19, F20), and a frozen feed raises a stale-data alert (F22) while entries on stale data are refused and exits pass."""
import asyncio, math
import pandas as pd, pytest
from quantsage.data.ccxt_source import CCXTSource
from quantsage.engine.backtest import backtest
from quantsage.events import Topic, OrderEvent
from quantsage.live import LiveSession, PollingFeed, StaleData
from tests.venues.fake_venue import FakeBinanceTrading
from .conftest import KEY, SECRET, venue, check_invariants

START = pd.Timestamp('2024-01-05 00:30', tz='UTC')          # the venue's clock: half an hour into a bar

class Clocked(PollingFeed):
    "Each poll first moves the venue's clock and the session's by `step` (unless frozen)."
    def __init__(self, fv, now, *a, step='1h', **kw):
        super().__init__(*a, **kw); self.fv, self.now, self.step, self.frozen = fv, now, pd.Timedelta(step), 0
    def poll(self, last):
        self.now[0] += self.step
        if self.frozen: self.frozen -= 1
        else: self.fv.now_ms = int(self.now[0].value//1_000_000)
        return super().poll(last)

def make(fv, store, now, bars=30, frozen_at=None, **kw):
    src = CCXTSource('binance', base_url=fv.url, clock=lambda: now[0], sleep=lambda s: None)
    feed = Clocked(fv, now, src, ['BTC/USDT'], '1h', warmup_bars=48, clock=lambda: now[0])
    return LiveSession('sma_cross', feed=feed, venue=venue(fv), store=store, session_id='f1', fast=5, slow=20, fraction=0.5,
                       clock=lambda: now[0], poll_s=0, max_bars=bars, **kw), feed

@pytest.fixture
def fv2(hourly):
    with FakeBinanceTrading({'BTCUSDT': hourly}, now=START, key=KEY, secret=SECRET, cash=50_000) as v: yield v

def test_only_closed_bars_reach_the_strategy_and_signals_equal_the_backtest(fv2, store, hourly):
    now = [START]
    s, feed = make(fv2, store, now, bars=60)
    seen = []
    s.a.kernel.bus.subscribe(Topic.MARKET_DATA, lambda b: seen.append((b.ts_event, now[0].value)))
    s.run_sync()
    assert len(seen) == 60 and all(t <= clock for t, clock in seen)                         # closed when handled, never forming
    closes = hourly.set_axis(hourly.index + pd.Timedelta('1h'))
    assert [t for t, _ in seen] == list(closes.loc[START.floor('1h') + pd.Timedelta('1h'):].index[:60].as_unit('ns').asi8)
    # the first bar after the warm-up closed at START's hour: bars closing later each came on the poll after they closed
    live = store.read_table('signals', run_id='f1').sort_values('ts_event')
    bt = backtest('sma_cross', closes.loc[:pd.Timestamp(seen[-1][0], tz='UTC')], fast=5, slow=20).signals
    bt = bt[bt.ts_event >= pd.Timestamp(seen[0][0], tz='UTC')]
    key = lambda f: [(pd.Timestamp(t).value, str(d)) for t, d in zip(f.ts_event, f.direction)]
    assert len(live) > 0 and key(live) == key(bt)
    check_invariants(store, fv2, sid='f1')

def test_a_bad_bar_is_quarantined_and_never_seen(fv2, store, hourly):
    bad_open = pd.Timestamp('2024-01-05 10:00', tz='UTC')
    fv2.bars['BTCUSDT'] = fv2.bars['BTCUSDT'].copy()
    fv2.bars['BTCUSDT'].loc[bad_open, 'high'] = fv2.bars['BTCUSDT'].loc[bad_open, 'low'] / 2      # high below low: impossible
    fv2.bars['BTCUSDT'].loc[bad_open + pd.Timedelta('3h'), 'close'] = math.nan
    now = [START]
    s, feed = make(fv2, store, now, bars=20)
    seen = []
    s.a.kernel.bus.subscribe(Topic.MARKET_DATA, lambda b: seen.append(b.ts_event))
    s.run_sync()
    rules = {r for _, r, _ in feed.quarantined}
    assert {'high_below_open_close', 'nan_inf'} <= rules or {'low_above_open_close', 'nan_inf'} <= rules, feed.quarantined
    for t in (bad_open, bad_open + pd.Timedelta('3h')):
        assert (t + pd.Timedelta('1h')).value not in seen                                         # never reached a strategy

def test_a_frozen_feed_raises_a_stale_alert_and_fresh_bars_clear_it(fv2, store, hourly):
    now = [START]
    s, feed = make(fv2, store, now, bars=12)
    orig = feed.poll
    n = [0]
    def poll(last):
        n[0] += 1
        if n[0] == 5: feed.frozen = 3                           # the venue stops for 3 hours while the clock goes on
        return orig(last)
    feed.poll = poll
    s.run_sync()
    ev = store.read_table('system_events', run_id='f1')
    stale = ev[ev.kind == 'data_stale']
    assert len(stale) == 1 and 'no new closed bar for' in stale.message.iloc[0]
    assert ev.message.str.contains('fresh bars again').any()

def test_stale_data_refuses_entries_and_lets_exits_pass(fv2, store):
    now = [pd.Timestamp('2024-01-05 12:00', tz='UTC')]
    chk = StaleData(2*3_600_000_000_000, clock=lambda: now[0])
    entry = OrderEvent('e1', 'BTC/USDT', 'buy', 1.0, 'market', 1, 1)
    assert chk.limit(entry, 100., 1e5, None).quantity == 0                                      # no bar yet
    chk.last['BTC/USDT'] = pd.Timestamp('2024-01-05 11:00', tz='UTC').value
    assert chk.limit(entry, 100., 1e5, None) is None                                           # 1 h old: fresh
    now[0] += pd.Timedelta('2h')
    lim = chk.limit(entry, 100., 1e5, None)
    assert lim.quantity == 0 and 'stale data' in lim.message and '0 days 03:00:00 old' in lim.message
    s, _ = make(fv2, store, [START])                                                           # in the session's risk layers
    risk = s.a.kernel.portfolio.risk
    assert s.stale in risk.checks
    exit_ = OrderEvent('x1', 'BTC/USDT', 'sell', 1.0, 'market', 1, 1, reduce_only=True)
    s.stale.last.clear()
    assert risk.check(exit_, s.a.kernel.portfolio) is not None                                 # exits are never held back
    s.a.kernel.portfolio.marks['BTC/USDT'] = 40_000.
    assert risk.check(entry, s.a.kernel.portfolio) is None

def test_paper_on_the_live_feed_fills_at_the_next_open_and_resumes_where_it_stopped(fv2, store, hourly, tmp_path):
    from quantsage.data.store import Store
    def paper(st, now, bars):
        src = CCXTSource('binance', base_url=fv2.url, clock=lambda: now[0], sleep=lambda s: None)
        feed = Clocked(fv2, now, src, ['BTC/USDT'], '1h', warmup_bars=48, clock=lambda: now[0])
        return LiveSession('sma_cross', venue=None, feed=feed, store=st, session_id='p1', initial_cash=50_000., fast=5, slow=20,
                           fraction=0.5, clock=lambda: now[0], poll_s=0, max_bars=bars)
    now = [START]
    fv2.now_ms = int(START.value//1_000_000)
    paper(store, now, 60).run_sync()
    fills = store.read_table('trades', run_id='p1')
    opens = hourly.open
    assert len(fills) >= 2 and len(fv2.orders) == 0                                            # simulated fills, nothing at the venue
    for f in fills.itertuples():                                                              # the next bar's open (costs apart)
        nxt = opens.loc[f.ts_event - pd.Timedelta('1h')]
        assert abs(f.price/nxt - 1) < 0.002, (f.ts_event, f.price, nxt)
    ev = store.read_table('system_events', run_id='p1')
    assert set(ev.source) == {'paper'} and ev.data.iloc[0]['symbols'] == ['BTC/USDT']          # counted as paper days by the gate
    # the same 60 bars in two halves, stopped and resumed, give the same signals
    fv2.now_ms = int(START.value//1_000_000)
    with Store(f"sqlite:///{tmp_path}/halves.sqlite") as st2:
        now2 = [START]
        paper(st2, now2, 30).run_sync()
        again = paper(st2, now2, 30)
        assert again.resumed
        again.run_sync()
        key = lambda f: [(pd.Timestamp(t).value, str(d)) for t, d in zip(f.ts_event, f.direction)]
        whole, halves = store.read_table('signals', run_id='p1').sort_values('ts_event'), st2.read_table('signals', run_id='p1').sort_values('ts_event')
        assert key(whole) == key(halves)

def test_F26_a_wall_clock_jump_neither_closes_a_forming_bar_nor_repeats_one(fv2, store, hourly):
    "The session's clock jumps an hour ahead, then back; the venue's clock is the truth for what has closed."
    now = [START]
    s, feed = make(fv2, store, now, bars=20)
    steps = iter(['1h', '1h', '2h', '-1h', '1h', '1h'] + ['1h']*40)
    orig = feed.poll
    def poll(last):
        step = pd.Timedelta(next(steps))
        now[0] += step - feed.step
        if step == pd.Timedelta('2h'): feed.frozen = 1                       # the jump: our clock only, not the venue's
        return orig(last)
    feed.poll = poll
    seen = []
    s.a.kernel.bus.subscribe(Topic.MARKET_DATA, lambda b: seen.append(b.ts_event))
    s.run_sync()
    assert len(seen) == len(set(seen)) == 20 and seen == sorted(seen)             # none twice, none out of order
    assert all(t <= fv2.now_ms*1_000_000 for t in seen)                           # none before the venue closed it

def test_a_live_session_shows_in_the_dashboard(fv, store, hourly):
    from quantsage.apps.dashboard import DashboardData
    from .conftest import run
    assert not run(fv, store, hourly, max_bars=80)
    d = DashboardData(store)
    runs = d.runs()
    assert 's1' in set(runs.run_id) and runs.set_index('run_id').loc['s1', 'kind'] == 'session'
    eq = d.equity('s1')
    assert len(eq) == 80 and eq.equity.iloc[-1] > 0
    assert len(d.fills('s1')) == len(store.read_table('trades', run_id='s1')) > 0

def test_an_alpaca_live_feed_hands_out_session_closes_as_they_close(tmp_path):
    "PollingFeed over AlpacaSource (alpaca-py against the loopback Alpaca): daily bars, each after its session closed, once."
    from quantsage.config import Secret
    from quantsage.data.alpaca_source import AlpacaSource
    from quantsage.testing import shared_data
    from tests.venues.fake_venue import FakeAlpaca
    raw = pd.read_csv(shared_data('us_SPY_1d_adj.csv'), index_col='timestamp'); raw.index = pd.to_datetime(raw.index, utc=True)
    with FakeAlpaca({'SPY': raw}) as fa:
        now = [pd.Timestamp('2024-03-04 15:00', tz='America/New_York').tz_convert('UTC')]                # Monday, the session open
        src = AlpacaSource(Secret('APCA_API_KEY_ID', 'PKTESTKEY0001'), Secret('APCA_API_SECRET_KEY', 'test-secret-0001'),
                           base_url=fa.url, clock=lambda: now[0])
        feed = PollingFeed(src, ['SPY'], '1d', warmup_bars=30, clock=lambda: now[0])
        hist = feed.history()['SPY']
        assert len(hist) >= 15 and hist.index[-1] == pd.Timestamp('2024-03-01 16:00', tz='America/New_York')   # Friday's close
        last = {'SPY': int(hist.index[-1].value)}
        assert len(feed.poll(last)['SPY']) == 0                                 # Monday is still trading: nothing new
        now[0] = pd.Timestamp('2024-03-05 10:00', tz='America/New_York').tz_convert('UTC')
        new = feed.poll(last)['SPY']
        assert list(new.index) == [pd.Timestamp('2024-03-04 16:00', tz='America/New_York')]
        last['SPY'] = int(new.index[-1].value)
        assert len(feed.poll(last)['SPY']) == 0                                  # never twice

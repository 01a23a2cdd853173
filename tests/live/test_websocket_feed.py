"""The websocket feed: ccxt.pro against a loopback Binance kline stream, REST (the loopback Binance) as the backstop.
Closed klines come over the stream; a forming kline never reaches a strategy; klines lost by the stream are fetched by
REST once overdue, each bar once and in order."""
import threading, time
import pandas as pd, pytest
from quantsage.data.ccxt_source import CCXTSource
from quantsage.events import Topic
from quantsage.live import LiveSession, WebsocketFeed
from tests.venues.fake_venue import FakeBinanceTrading, FakeBinanceStream
from .conftest import KEY, SECRET, venue

START = pd.Timestamp('2024-01-05 00:00', tz='UTC')

def drive(fv, stream, hourly, now, n, seen, lose=()):
    "A market that moves: each step a forming update, then the closed kline (unless lost), then the clocks move an hour."
    rows = hourly.loc[START:].iloc[:n]
    for i, (t, r) in enumerate(rows.iterrows()):
        deadline = time.monotonic() + 10
        while len(seen) < i - sum(1 for j in lose if j < i) and time.monotonic() < deadline: time.sleep(0.02)   # the session kept up
        open_ms = int(t.value//1_000_000)
        while stream.connected() == 0: time.sleep(0.05)
        row = (r.open, r.high, r.low, r.close, r.volume)
        stream.kline('BTCUSDT', open_ms, (r.open, r.high, r.low, (r.open + r.close)/2, r.volume/2), closed=False)   # still forming
        now[0] = t + pd.Timedelta('1h'); fv.now_ms = int(now[0].value//1_000_000)
        if i in lose: stream.drop(1)
        stream.kline('BTCUSDT', open_ms, row, closed=True)
        time.sleep(0.05)
    now[0] += pd.Timedelta('10min'); fv.now_ms = int(now[0].value//1_000_000)       # and time goes on: what the stream lost is overdue

def session(fv, stream, store, now, bars):
    src = CCXTSource('binance', base_url=fv.url, clock=lambda: now[0], sleep=lambda s: None)
    feed = WebsocketFeed(src, ['BTC/USDT'], '1h', ws_url=stream.url, grace_s=60, warmup_bars=48, clock=lambda: now[0])
    return LiveSession('sma_cross', feed=feed, venue=venue(fv), store=store, session_id='w1', fast=5, slow=20, fraction=0.5,
                       clock=lambda: now[0], poll_s=0.05, max_bars=bars, duration=60), feed

@pytest.mark.parametrize('lose', [(), (3, 4, 9)])
def test_bars_come_over_the_stream_and_rest_fills_what_it_lost(hourly, store, lose):
    now = [START]
    with FakeBinanceTrading({'BTCUSDT': hourly}, now=START, key=KEY, secret=SECRET, cash=50_000) as fv, FakeBinanceStream() as stream:
        s, feed = session(fv, stream, store, now, 12)
        seen = []
        s.a.kernel.bus.subscribe(Topic.MARKET_DATA, lambda b: seen.append((b.ts_event, b.close)))
        t = threading.Thread(target=drive, args=(fv, stream, hourly, now, 12, seen, lose)); t.start()
        s.run_sync(); t.join()
        closes = hourly.set_axis(hourly.index + pd.Timedelta('1h')).loc[START + pd.Timedelta('1h'):].iloc[:12]
        assert [ts for ts, _ in seen] == list(closes.index.as_unit('ns').asi8)                # each bar once, in order, none forming
        assert [c for _, c in seen] == closes.close.tolist()                                  # the closed values, never a forming one
        assert feed.from_stream + feed.from_rest == 12                                        # every bar counted once, by one path
        if not lose: assert feed.from_rest == 0                                               # nothing lost: REST never needed
        else:                                                                                 # what the stream lost came by REST; the bar
            assert len(lose) <= feed.from_rest <= 2*len(lose)                                 # just after a loss may too (its close is past
                                                                                              # when the backstop runs, a race with the stream)
        assert stream.subscriptions[0]['params'] == ['btcusdt@kline_1h']

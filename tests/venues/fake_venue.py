"""Loopback fake venues: small HTTP servers on 127.0.0.1 that speak the subset of a venue's REST API the real
client libraries call, with a scripted fault plan per request and a request log for assertions.

`FakeVenue` is the shared machinery (routing, faults, log); `FakeBinance` serves Binance spot market data
(`/api/v3/exchangeInfo`, `/api/v3/klines`) from real bars. Order, balance and fills endpoints (the live
issue) are added the same way: register a handler for (method, path) in `routes`.
"""
from __future__ import annotations
import json, re, threading, time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs
import numpy as np, pandas as pd

@dataclass
class Fault:
    "One scripted misbehaviour for the next matching request."
    kind: str                              # status | hang | malformed | empty | short
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: str | None = None
    seconds: float = 0.0
    rows: int = 0
    @classmethod
    def http(cls, status, body=None, **headers): return cls('status', status=status, body=body, headers=headers)
    @classmethod
    def hang(cls, seconds): return cls('hang', seconds=seconds)
    @classmethod
    def malformed(cls): return cls('malformed')
    @classmethod
    def empty(cls): return cls('empty')
    @classmethod
    def short(cls, rows): return cls('short', rows=rows)

@dataclass
class Request:
    t: float; method: str; path: str; query: dict

class FakeVenue:
    "A loopback HTTP venue: `routes[(method, path)] = handler(query, body) -> (status, payload)`; faults per path."
    def __init__(self):
        self.routes, self.faults, self.log, self._lock = {}, {}, [], threading.Lock()
        self.pattern_routes = []            # (method, compiled regex of the path, handler(query, body, match))
        venue = self
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a): pass
            def do_GET(self): venue._handle(self, 'GET')
            def do_POST(self): venue._handle(self, 'POST')
            def do_DELETE(self): venue._handle(self, 'DELETE')
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self): self._thread.start(); return self
    def stop(self): self.server.shutdown(); self.server.server_close()
    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()

    def plan(self, path, *faults):
        "Queue faults for the next requests to `path` (one fault per request, in order)."
        with self._lock: self.faults.setdefault(path, deque()).extend(faults)

    def default_error_body(self, status): return ''

    def shorten(self, payload, rows):
        "A short page: fewer rows than the venue has."
        return payload[:rows] if isinstance(payload, list) else payload

    def requests(self, path=None):
        return [r for r in self.log if path is None or r.path == path]

    def _handle(self, h, method):
        u = urlsplit(h.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        n = int(h.headers.get('Content-Length') or 0)
        body = h.rfile.read(n).decode() if n else ''
        with self._lock:
            self.log.append(Request(time.monotonic(), method, u.path, q))
            fault = self.faults.get(u.path, deque()).popleft() if self.faults.get(u.path) else None
        if fault and fault.kind == 'hang': time.sleep(fault.seconds)
        if fault and fault.kind == 'status':
            return self._send(h, fault.status, fault.body if fault.body is not None else self.default_error_body(fault.status), fault.headers)
        if fault and fault.kind == 'malformed': return self._send(h, 200, '{"oops": [1, 2,')
        if fault and fault.kind == 'empty': return self._send(h, 200, '[]')
        route = self.routes.get((method, u.path))
        if route is None:
            for m, rx, handler in self.pattern_routes:
                if m == method and (match := rx.fullmatch(u.path)):
                    route = lambda q, body, handler=handler, match=match: handler(q, body, match); break
        if route is None: return self._send(h, 404, json.dumps({'code': -1, 'msg': f'no route {method} {u.path}'}))
        status, payload = route(q, body)
        if fault and fault.kind == 'short': payload = self.shorten(payload, fault.rows)
        self._send(h, status, json.dumps(payload))

    def _send(self, h, status, text, headers=None):
        data = text.encode()
        try:
            h.send_response(status)
            h.send_header('Content-Type', 'application/json'); h.send_header('Content-Length', str(len(data)))
            for k, v in (headers or {}).items(): h.send_header(k, str(v))
            h.end_headers(); h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError): pass      # the client gave up (timeout): fine

class FakeBinance(FakeVenue):
    "Binance spot market data from real bars: `bars[symbol_id]` is an open-stamped OHLCV frame (UTC)."
    INTERVALS = {'1m': 60_000, '5m': 300_000, '15m': 900_000, '1h': 3_600_000, '4h': 14_400_000, '1d': 86_400_000}

    def __init__(self, bars: dict, now: pd.Timestamp | None = None):
        super().__init__()
        self.bars = {k: v for k, v in bars.items()}
        self.now_ms = int((now or pd.Timestamp.now('UTC')).value // 1_000_000)
        self.routes[('GET', '/api/v3/exchangeInfo')] = self._exchange_info
        self.routes[('GET', '/api/v3/klines')] = self._klines
        self.routes[('GET', '/api/v3/time')] = lambda q, b: (200, {'serverTime': self.now_ms})

    def default_error_body(self, status):
        "What Binance sends with these statuses (ccxt maps -1003 to DDoSProtection, -1001 to OperationFailed)."
        return {429: '{"code":-1003,"msg":"Too many requests; current limit is 6000 request weight per 1 MINUTE."}',
                418: '{"code":-1003,"msg":"Way too many requests; IP banned."}',
                503: '{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}',
                500: '<html><body><h1>500 Internal Server Error</h1></body></html>'}.get(status, '')

    def _exchange_info(self, q, body):
        syms = []
        for sid in self.bars:
            base, quote = (sid[:-4], sid[-4:]) if sid.endswith('USDT') else (sid[:-3], sid[-3:])
            syms.append({'symbol': sid, 'status': 'TRADING', 'baseAsset': base, 'quoteAsset': quote, 'baseAssetPrecision': 8,
                         'quotePrecision': 8, 'permissionSets': [['SPOT']], 'isSpotTradingAllowed': True,
                         'orderTypes': ['LIMIT', 'LIMIT_MAKER', 'MARKET', 'STOP_LOSS_LIMIT', 'TAKE_PROFIT_LIMIT'],
                         'filters': [{'filterType': 'PRICE_FILTER', 'minPrice': '0.01', 'maxPrice': '1000000', 'tickSize': '0.01'},
                                     {'filterType': 'LOT_SIZE', 'minQty': '0.00001', 'maxQty': '9000', 'stepSize': '0.00001'}]})
        return 200, {'timezone': 'UTC', 'serverTime': self.now_ms, 'symbols': syms}

    def _klines(self, q, body):
        sid, interval = q.get('symbol'), q.get('interval')
        if sid not in self.bars: return 400, {'code': -1121, 'msg': 'Invalid symbol.'}
        step = self.INTERVALS.get(interval)
        if step is None: return 400, {'code': -1120, 'msg': 'Invalid interval.'}
        limit = min(int(q.get('limit', 500)), 1000)
        df = self.bars[sid]
        t = df.index.as_unit('ms').asi8
        lo, hi = int(q.get('startTime', 0)), int(q.get('endTime', 2**62))
        m = (t >= lo) & (t <= hi) & (t <= self.now_ms)          # the forming bar (open <= now < close) is included, as Binance does
        rows = df[m].iloc[:limit]
        out = []
        for ts, r in zip(t[m][:limit], rows.itertuples(index=False)):
            out.append([int(ts), repr(r.open), repr(r.high), repr(r.low), repr(r.close), repr(r.volume), int(ts) + step - 1,
                        '0', 0, '0', '0', '0'])
        return 200, out

class FakeAlpaca(FakeVenue):
    """Alpaca market data (`/v2/stocks/bars`) and the assets list (`/v2/assets`) from real daily bars.
    `bars[symbol]` is a frame labelled with session dates (the shared US files); Alpaca stamps a daily bar at
    midnight New York of its session, which is what this server sends. Pages hold at most `page_size` bars."""
    def __init__(self, bars: dict, key='PKTESTKEY0001', secret='test-secret-0001', page_size=500):
        super().__init__()
        self.bars, self.key, self.secret, self.page_size = bars, key, secret, page_size
        self.routes[('GET', '/v2/stocks/bars')] = self._bars
        self.routes[('GET', '/v2/assets')] = self._assets
        self.headers_seen = []
        orig = self._handle
        def _handle(h, method):
            self.headers_seen.append((h.headers.get('APCA-API-KEY-ID'), h.headers.get('APCA-API-SECRET-KEY')))
            if (h.headers.get('APCA-API-KEY-ID'), h.headers.get('APCA-API-SECRET-KEY')) != (self.key, self.secret):
                with self._lock: self.log.append(Request(time.monotonic(), method, urlsplit(h.path).path, {}))
                return self._send(h, 401, '{"code":40110000,"message":"request is not authorized"}')
            return orig(h, method)
        self._handle = _handle

    def default_error_body(self, status):
        return {429: '{"code":42910000,"message":"rate limit exceeded"}', 500: '{"code":50010000,"message":"internal server error"}',
                503: '{"code":50310000,"message":"service unavailable"}', 504: '{"code":50410000,"message":"gateway timeout"}'}.get(status, '')

    def shorten(self, payload, rows):
        "A cut-short reply: the first `rows` bars and no next page."
        return {'bars': {k: v[:rows] for k, v in payload.get('bars', {}).items()}, 'next_page_token': None}

    def _assets(self, q, body):
        return 200, [{'id': f'00000000-0000-0000-0000-{i:012d}', 'class': 'us_equity', 'exchange': 'ARCA', 'symbol': s, 'name': s,
                      'status': 'active', 'tradable': True, 'marginable': True, 'shortable': True, 'easy_to_borrow': True,
                      'fractionable': True} for i, s in enumerate(sorted(self.bars))]

    def _bars(self, q, body):
        if q.get('timeframe') != '1Day': return 422, {'code': 42210000, 'message': f"this fake serves 1Day bars only, got {q.get('timeframe')}"}
        out, token = {}, q.get('page_token')
        syms = q.get('symbols', '').split(',')
        bad = [s for s in syms if s not in self.bars]
        if bad: return 422, {'code': 42210000, 'message': f"invalid symbol: {','.join(bad)}"}
        lo, hi = pd.Timestamp(q['start']), pd.Timestamp(q.get('end', '2100-01-01T00:00:00Z'))
        rows = []
        for s in syms:
            df = self.bars[s]
            t = (pd.DatetimeIndex(df.index.tz_localize(None).normalize()).tz_localize('America/New_York').tz_convert('UTC'))
            m = (t >= lo) & (t <= hi)
            rows += [(s, ts, r) for ts, r in zip(t[m], df[m].itertuples(index=False))]
        start = int(token) if token else 0
        page = rows[start:start + min(self.page_size, int(q.get('limit', 10_000)))]
        for s, ts, r in page:
            out.setdefault(s, []).append({'t': ts.strftime('%Y-%m-%dT%H:%M:%SZ'), 'o': r.open, 'h': r.high, 'l': r.low, 'c': r.close,
                                          'v': r.volume, 'n': 1, 'vw': r.close})
        nxt = start + len(page)
        return 200, {'bars': out, 'next_page_token': str(nxt) if nxt < len(rows) else None}

class FakeKraken(FakeVenue):
    """Kraken spot market data (`/0/public/AssetPairs`, `/0/public/Assets`, `/0/public/OHLC`) from real bars.
    `bars['XXBTZUSD']` is an open-stamped frame. Kraken reports errors inside a 200 reply (`{"error": [...]}`);
    OHLC returns up to 720 bars opening after `since` (seconds), the last one possibly still forming."""
    def __init__(self, bars: dict, now: pd.Timestamp):
        super().__init__()
        self.bars, self.now_s = bars, int(now.value // 1_000_000_000)
        self.routes[('GET', '/0/public/AssetPairs')] = lambda q, b: (200, {'error': [], 'result': {
            pid: {'altname': pid[1:4] + pid[5:], 'wsname': f"{pid[1:4]}/{pid[5:]}", 'aclass_base': 'currency', 'base': pid[:4],
                  'aclass_quote': 'currency', 'quote': pid[4:], 'pair_decimals': 1, 'lot_decimals': 8, 'cost_decimals': 5,
                  'ordermin': '0.0001', 'costmin': '0.5', 'tick_size': '0.1', 'status': 'online',
                  'fees': [[0, 0.26]], 'fees_maker': [[0, 0.16]], 'leverage_buy': [], 'leverage_sell': []} for pid in self.bars}})
        self.routes[('GET', '/0/public/Assets')] = lambda q, b: (200, {'error': [], 'result': {
            a: {'aclass': 'currency', 'altname': a[1:], 'decimals': 10, 'display_decimals': 5, 'status': 'enabled'}
            for pid in self.bars for a in (pid[:4], pid[4:])}})
        self.routes[('GET', '/0/public/OHLC')] = self._ohlc
        self.routes[('GET', '/0/public/Time')] = lambda q, b: (200, {'error': [], 'result': {'unixtime': self.now_s, 'rfc1123': ''}})

    def _ohlc(self, q, body):
        pid = q.get('pair')
        if pid not in self.bars: return 200, {'error': ['EQuery:Unknown asset pair'], 'result': {}}
        step = int(q.get('interval', 1))*60
        df = self.bars[pid]
        t = df.index.as_unit('s').asi8
        m = (t > int(q.get('since', 0))) & (t <= self.now_s)
        rows = df[m].iloc[:720]
        out = [[int(ts), repr(r.open), repr(r.high), repr(r.low), repr(r.close), repr(r.close), repr(r.volume), 1]
               for ts, r in zip(t[m][:720], rows.itertuples(index=False))]
        return 200, {'error': [], 'result': {pid: out, 'last': int(t[m][:720][-1]) if len(out) else int(q.get('since', 0))}}

class FakeCoinbase(FakeVenue):
    """Coinbase Advanced Trade public market data: `/api/v3/brokerage/market/products` and
    `/api/v3/brokerage/market/products/{id}/candles` (newest first, at most 350, the forming candle included)."""
    GRANULARITY = {'ONE_MINUTE': 60, 'FIVE_MINUTE': 300, 'FIFTEEN_MINUTE': 900, 'ONE_HOUR': 3600, 'ONE_DAY': 86400}

    def __init__(self, bars: dict, now: pd.Timestamp):
        super().__init__()
        self.bars, self.now_s = bars, int(now.value // 1_000_000_000)
        self.routes[('GET', '/api/v3/brokerage/market/products')] = self._products
        ccys = sorted({c for pid in bars for c in pid.split('-')})
        self.routes[('GET', '/v2/currencies')] = lambda q, b: (200, {'data': [{'id': c, 'name': c, 'min_size': '0.01'} for c in ccys if c in ('USD', 'EUR')]})
        self.routes[('GET', '/v2/currencies/crypto')] = lambda q, b: (200, {'data': [{'code': c, 'name': c, 'exponent': 8, 'type': 'crypto'} for c in ccys if c not in ('USD', 'EUR')]})
        self.routes[('GET', '/v2/exchange-rates')] = lambda q, b: (200, {'data': {'currency': 'USD', 'rates': {c: '1' for c in ccys}}})
        self.pattern_routes.append(('GET', re.compile(r'/api/v3/brokerage/market/products/([A-Z0-9-]+)/candles'), self._candles))
        self.routes[('GET', '/v2/time')] = lambda q, b: (200, {'data': {'iso': pd.Timestamp(self.now_s, unit='s', tz='UTC').isoformat(),
                                                                         'epoch': self.now_s}})

    def _products(self, q, body):
        if q.get('product_type', 'SPOT') != 'SPOT': return 200, {'products': [], 'num_products': 0}
        return 200, {'products': [{'product_id': pid, 'base_currency_id': pid.split('-')[0], 'quote_currency_id': pid.split('-')[1],
                                   'base_increment': '0.00000001', 'quote_increment': '0.01', 'price_increment': '0.01',
                                   'base_min_size': '0.00000001', 'base_max_size': '3400', 'quote_min_size': '1', 'quote_max_size': '150000000',
                                   'status': 'online', 'trading_disabled': False, 'product_type': 'SPOT', 'alias_to': [],
                                   'display_name': pid, 'base_display_symbol': pid.split('-')[0], 'quote_display_symbol': pid.split('-')[1]}
                                  for pid in self.bars], 'num_products': len(self.bars)}

    def _candles(self, q, body, match):
        pid = match.group(1)
        if pid not in self.bars: return 404, {'error': 'NOT_FOUND', 'message': 'ProductID is invalid'}
        df = self.bars[pid]
        t = df.index.as_unit('s').asi8
        lo, hi = int(q.get('start', 0)), int(q.get('end', 2**40))
        step = self.GRANULARITY.get(q.get('granularity', 'ONE_HOUR'), 3600)
        if (hi - lo)//step > 350:
            return 400, {'error': 'INVALID_ARGUMENT', 'error_details': 'number of candles requested should be less than 350',
                         'message': 'number of candles requested should be less than 350'}
        m = (t >= lo) & (t <= hi) & (t <= self.now_s)
        rows = list(zip(t[m], df[m].itertuples(index=False)))[:350]
        return 200, {'candles': [{'start': str(int(ts)), 'low': repr(r.low), 'high': repr(r.high), 'open': repr(r.open),
                                  'close': repr(r.close), 'volume': repr(r.volume)} for ts, r in reversed(rows)]}

# ---------------------------------------------------------------------------------------------------------------------------
# Trading: Binance spot order, cancel, lookup, open orders, trades and account endpoints, with a ground-truth ledger.

import hashlib, hmac, itertools
from urllib.parse import parse_qsl, urlencode

@dataclass
class VenueOrderRecord:
    "The venue's own record of one order (the ground truth the invariants compare against)."
    order_id: int; client_order_id: str; symbol: str; side: str; type: str; quantity: float; price: float | None
    status: str = 'NEW'; executed: float = 0.0; quote: float = 0.0; created: float = 0.0; time_ms: int = 0

@dataclass
class VenueTrade:
    trade_id: int; order_id: int; symbol: str; side: str; quantity: float; price: float; commission: float; time_ms: int

class TradingFaults:
    """Order-path misbehaviours that a plain per-request `Fault` cannot express, consumed in order:
    `commit_then_timeout`: accept the next order, then hold the reply past the client's timeout (F02/F07);
    `timeout_before_commit`: hold the next order request past the timeout and never record it (F08);
    `late_commit`: hold it, and record it `late_s` after the request arrived, while the client has given up (F08 variant);
    `commit_then_504`: accept the next order, then answer 504 Gateway Timeout (F10);
    `hide_s`: newly created orders are invisible to lookups for this long (F11);
    `fills_per_order`: split every market fill into this many trades (F03);
    `duplicate_trades`: the trades endpoint reports every trade twice (F12);
    `reversed_trades`: the trades endpoint reports them newest first (out of order, F12);
    `fill_on_cancel`: a cancel that arrives for a working order fills it first, then answers 'Unknown order' (F14).
    `create` may also hold `None` (the order goes through) and plain `Fault.http(...)` answers (429, 503: not taken)."""
    def __init__(self):
        self.create = deque(); self.hide_s = 0.0; self.fills_per_order = 1; self.duplicate_trades = False
        self.fill_on_cancel = False; self.late_s = 2.0; self.reversed_trades = False

class FakeBinanceTrading(FakeBinance):
    """A Binance spot venue that trades: market orders fill at once at `prices[symbol]` (split into
    `faults.fills_per_order` trades), limit orders rest until `cross(symbol, price)`. Requests are signed and checked
    (HMAC-SHA256, `X-MBX-APIKEY`); a client order id may be reused only once its earlier order is closed, as on Binance,
    so a blind re-send of a filled order creates a second order and the ledger shows it."""
    FEE = 0.001

    def __init__(self, bars: dict, now=None, key='binance-test-key', secret='binance-test-secret', cash=100_000.0,
                 holdings: dict | None = None, prices: dict | None = None, client_timeout_s: float = 1.0):
        super().__init__(bars, now=now)
        self.key, self.secret, self.client_timeout_s = key, secret, client_timeout_s
        self.balances = {'USDT': float(cash), **{k: float(v) for k, v in (holdings or {}).items()}}
        self.prices = dict(prices or {})
        self.orders: list[VenueOrderRecord] = []; self.trades: list[VenueTrade] = []
        self.faults_trading, self.auth_fail, self.maintenance, self.maintenance_until = TradingFaults(), False, False, 0.0
        self.clock_skew_ms = None          # set: signed requests must be within recvWindow of (real time + skew), /time says so
        self.routes[('GET', '/api/v3/time')] = lambda q, b: (200, {'serverTime': self._server_ms()})
        self._ids, self._trade_ids, self._book = itertools.count(1000), itertools.count(5000), threading.RLock()
        r = self.routes
        r[('POST', '/api/v3/order')] = self._signed(self._create)
        r[('GET', '/api/v3/order')] = self._signed(self._get)
        r[('DELETE', '/api/v3/order')] = self._signed(self._cancel)
        r[('GET', '/api/v3/openOrders')] = self._signed(self._open)
        r[('GET', '/api/v3/myTrades')] = self._signed(self._my_trades)
        r[('GET', '/api/v3/account')] = self._signed(self._account)

    def _server_ms(self):
        return int(time.time()*1000) + self.clock_skew_ms if self.clock_skew_ms is not None else self.now_ms

    def maintenance_for(self, seconds):
        "Every signed request answers 503 for `seconds` from now (F16)."
        self.maintenance_until = time.monotonic() + seconds

    # -- ledger views for assertions ----------------------------------------------------------------------------------------
    def orders_for(self, client_order_id): return [o for o in self.orders if o.client_order_id == client_order_id]
    def creates(self, client_order_id=None):
        "Order POSTs the venue received (for one client order id), accepted or not."
        return [r for r in self.log if r.method == 'POST' and r.path == '/api/v3/order'
                and (client_order_id is None or r.query.get('newClientOrderId') == client_order_id)]
    def position(self, base): return self.balances.get(base, 0.0)

    # -- request plumbing ---------------------------------------------------------------------------------------------------
    def _signed(self, fn):
        def handler(q, body):
            params = dict(parse_qsl(body)) if body else dict(q)
            params.update({k: v for k, v in q.items() if k not in params})
            sig = params.pop('signature', None)
            if self.auth_fail or sig is None:
                return 401, {'code': -2015, 'msg': 'Invalid API-key, IP, or permissions for action.'}
            payload = urlencode([(k, v) for k, v in params.items()])
            want = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, sig): return 400, {'code': -1022, 'msg': 'Signature for this request is not valid.'}
            if self.clock_skew_ms is not None and abs(int(params.get('timestamp', 0)) - self._server_ms()) > int(params.get('recvWindow', 5000)):
                return 400, {'code': -1021, 'msg': 'Timestamp for this request is outside of the recvWindow.'}
            if self.maintenance or time.monotonic() < self.maintenance_until:
                return 503, {'code': -1001, 'msg': 'Internal error; unable to process your request. Please try again.'}
            return fn(params)
        return handler

    def _handle(self, h, method):
        if h.headers.get('X-MBX-APIKEY') not in (None, self.key):
            with self._lock: self.log.append(Request(time.monotonic(), method, urlsplit(h.path).path, {}))
            return self._send(h, 401, '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}')
        if method == 'POST' and urlsplit(h.path).path == '/api/v3/order':
            n = int(h.headers.get('Content-Length') or 0)
            body = h.rfile.read(n).decode() if n else ''
            q = dict(parse_qsl(body))
            with self._lock:
                self.log.append(Request(time.monotonic(), method, '/api/v3/order', q))
                key = next((k for k in ('POST /api/v3/order', '/api/v3/order') if self.faults.get(k)), None)   # POST-only faults first
                fault = self.faults[key].popleft() if key else None
                special = self.faults_trading.create.popleft() if self.faults_trading.create else None
            if isinstance(special, Fault): fault, special = special, None          # a plain fault queued among the order-path ones
            if fault is not None and fault.kind == 'status':
                return self._send(h, fault.status, fault.body if fault.body is not None else self.default_error_body(fault.status), fault.headers)
            if special == 'timeout_before_commit':
                time.sleep(self.client_timeout_s + 0.5); return self._send(h, 504, '')
            if special == 'late_commit':
                threading.Timer(self.faults_trading.late_s, lambda: self._signed(self._create)(q, '')).start()
                time.sleep(self.client_timeout_s + 0.5); return self._send(h, 504, '')
            status, payload = self._signed(self._create)(q, '')
            if special == 'commit_then_timeout': time.sleep(self.client_timeout_s + 0.5)
            if special == 'commit_then_504': return self._send(h, 504, '')
            return self._send(h, status, json.dumps(payload))
        return super()._handle(h, method)

    # -- order handling ------------------------------------------------------------------------------------------------------
    def _market_of(self, sid):
        return next((m for m in self._exchange_info(None, None)[1]['symbols'] if m['symbol'] == sid), None)

    _BAR_IN_ID = re.compile(r'qs[0-9a-f]{8}-([0-9a-f]+)-[0-9a-f]+')

    def _price(self, sid, cid=''):
        """Where the market is: `prices[symbol]` when a test set it; else, for a QuantSage session's order, the close of
        the bar its client order id names (the session's bar clock: replayed sessions trade at their bar's close); else
        the last closed bar before the venue's `now`."""
        p = self.prices.get(sid)
        if p is not None: return float(p)
        df = self.bars[sid]; t = df.index.as_unit('ns').asi8
        m = self._BAR_IN_ID.fullmatch(cid or '')
        if m: i = int(np.searchsorted(t, int(m.group(1), 16), side='left')) - 1      # the bar that closes at that time (open-stamped)
        else: i = int((t <= self.now_ms*1_000_000 - 3_600_000_000_000).sum()) - 1
        return float(df.close.iloc[max(0, i)])

    def _json(self, o: VenueOrderRecord, fills=None):
        d = {'symbol': o.symbol, 'orderId': o.order_id, 'orderListId': -1, 'clientOrderId': o.client_order_id, 'transactTime': o.time_ms,
             'time': o.time_ms, 'updateTime': o.time_ms, 'price': f"{o.price or 0:.8f}", 'origQty': f"{o.quantity:.8f}",
             'executedQty': f"{o.executed:.8f}", 'cummulativeQuoteQty': f"{o.quote:.8f}", 'status': o.status,
             'timeInForce': 'GTC', 'type': o.type, 'side': o.side, 'workingTime': o.time_ms, 'selfTradePreventionMode': 'NONE'}
        if fills is not None:
            d['fills'] = [{'price': f"{t.price:.8f}", 'qty': f"{t.quantity:.8f}", 'commission': f"{t.commission:.8f}",
                           'commissionAsset': 'USDT', 'tradeId': t.trade_id} for t in fills]
        return d

    def _execute(self, o: VenueOrderRecord, qty: float, price: float, parts: int = 1) -> list:
        base = o.symbol[:-4]
        out = []
        for i in range(parts):
            q = round(qty/parts, 8) if i < parts - 1 else round(qty - sum(t.quantity for t in out), 8)   # in whole lots, as reported
            fee = q*price*self.FEE
            t = VenueTrade(next(self._trade_ids), o.order_id, o.symbol, o.side, q, price, fee, int(time.time()*1000))
            self.trades.append(t); out.append(t)
            sign = 1 if o.side == 'BUY' else -1
            self.balances[base] = self.balances.get(base, 0.0) + sign*q
            self.balances['USDT'] -= sign*q*price + fee
            o.executed += q; o.quote += q*price
        o.status = 'FILLED' if o.executed >= o.quantity - 1e-12 else 'PARTIALLY_FILLED'
        return out

    def _create(self, p):
        sid, cid = p.get('symbol'), p.get('newClientOrderId') or f"venue-{next(self._ids)}"
        if self._market_of(sid) is None: return 400, {'code': -1121, 'msg': 'Invalid symbol.'}
        qty, typ, side = float(p['quantity']), p['type'], p['side']
        with self._book:
            if any(o.client_order_id == cid and o.status in ('NEW', 'PARTIALLY_FILLED') for o in self.orders):
                return 400, {'code': -2010, 'msg': 'Duplicate order sent.'}
            price = self._price(sid, cid)
            base = sid[:-4]
            if side == 'BUY' and qty*price*(1 + self.FEE) > self.balances['USDT'] + 1e-9:
                return 400, {'code': -2010, 'msg': 'Account has insufficient balance for requested action.'}
            if side == 'SELL' and qty > self.balances.get(base, 0.0) + 1e-12:
                return 400, {'code': -2010, 'msg': 'Account has insufficient balance for requested action.'}
            o = VenueOrderRecord(next(self._ids), cid, sid, side, typ, qty, float(p['price']) if 'price' in p else None,
                                 created=time.monotonic(), time_ms=int(time.time()*1000))
            self.orders.append(o)
            fills = []
            if typ == 'MARKET': fills = self._execute(o, qty, price, self.faults_trading.fills_per_order)
            elif typ == 'LIMIT' and ((side == 'BUY' and price <= o.price) or (side == 'SELL' and price >= o.price)):
                fills = self._execute(o, qty, price)
            return 200, self._json(o, fills)

    def cross(self, sid, price):
        "The market trades at `price`: resting limit orders that it reaches fill there."
        with self._book:
            self.prices[sid] = price
            for o in self.orders:
                if o.symbol == sid and o.status in ('NEW', 'PARTIALLY_FILLED') and o.type == 'LIMIT' and \
                        ((o.side == 'BUY' and price <= o.price) or (o.side == 'SELL' and price >= o.price)):
                    self._execute(o, o.quantity - o.executed, o.price)

    def _find(self, p):
        with self._book:
            if 'origClientOrderId' in p:
                found = [o for o in self.orders if o.client_order_id == p['origClientOrderId'] and o.symbol == p.get('symbol')]
            else:
                found = [o for o in self.orders if str(o.order_id) == p.get('orderId') and o.symbol == p.get('symbol')]
            found = [o for o in found if time.monotonic() - o.created >= self.faults_trading.hide_s]
            return found[-1] if found else None

    def _get(self, p):
        o = self._find(p)
        if o is None: return 400, {'code': -2013, 'msg': 'Order does not exist.'}
        return 200, self._json(o)

    def _cancel(self, p):
        with self._book:
            o = self._find(p)
            if o is not None and o.status in ('NEW', 'PARTIALLY_FILLED') and self.faults_trading.fill_on_cancel:
                self._execute(o, o.quantity - o.executed, self._price(o.symbol, o.client_order_id))
            if o is None or o.status not in ('NEW', 'PARTIALLY_FILLED'):
                return 400, {'code': -2011, 'msg': 'Unknown order sent.'}
            o.status = 'CANCELED'
            return 200, self._json(o)

    def _open(self, p):
        with self._book:
            return 200, [self._json(o) for o in self.orders if o.status in ('NEW', 'PARTIALLY_FILLED')
                         and (p.get('symbol') in (None, o.symbol))]

    def _my_trades(self, p):
        with self._book:
            ts = [t for t in self.trades if t.symbol == p.get('symbol') and ('orderId' not in p or str(t.order_id) == p['orderId'])
                  and t.trade_id >= int(p.get('fromId', 0)) and t.time_ms >= int(p.get('startTime', 0))]
            out = [{'symbol': t.symbol, 'id': t.trade_id, 'orderId': t.order_id, 'orderListId': -1, 'price': f"{t.price:.8f}",
                    'qty': f"{t.quantity:.8f}", 'quoteQty': f"{t.quantity*t.price:.8f}", 'commission': f"{t.commission:.8f}",
                    'commissionAsset': 'USDT', 'time': t.time_ms, 'isBuyer': t.side == 'BUY', 'isMaker': False, 'isBestMatch': True}
                   for t in ts]
            if self.faults_trading.duplicate_trades: out = [x for t in out for x in (t, dict(t))]
            if self.faults_trading.reversed_trades: out = out[::-1]
            return 200, out

    def _account(self, p):
        with self._book:
            return 200, {'makerCommission': 10, 'takerCommission': 10, 'canTrade': True, 'canWithdraw': False, 'canDeposit': True,
                         'updateTime': int(time.time()*1000), 'accountType': 'SPOT', 'permissions': ['SPOT'],
                         'balances': [{'asset': a, 'free': f"{v:.8f}", 'locked': '0.00000000'} for a, v in self.balances.items()]}

class FakeAlpacaTrading(FakeAlpaca):
    """Alpaca trading (paper API shape): `POST /v2/orders` (market orders fill at once at the close of the session the
    client order id names, else `prices[symbol]`), `GET /v2/orders:by_client_order_id`, `GET /v2/orders/{id}`,
    `DELETE /v2/orders/{id}`, `GET /v2/orders?status=open`, `GET /v2/positions`, `GET /v2/account`. A client order id is
    unique per account (Alpaca refuses a second order with one, 422). `create` queues order-path faults as on
    FakeBinanceTrading (`commit_then_504`, `timeout_before_commit`) or plain `Fault`s."""
    def __init__(self, bars: dict, cash=100_000.0, client_timeout_s=1.0, **kw):
        super().__init__(bars, **kw)
        self.cash, self.positions, self.orders, self.prices = float(cash), {}, [], {}
        self.create, self.client_timeout_s, self._ids = deque(), client_timeout_s, itertools.count(1)
        self.routes[('POST', '/v2/orders')] = self._submit
        self.routes[('GET', '/v2/orders:by_client_order_id')] = self._by_cid
        self.routes[('GET', '/v2/orders')] = lambda q, b: (200, [self._json(o) for o in self.orders if o['status'] in ('new', 'partially_filled')
                                                                  and (not q.get('symbols') or o['symbol'] in q['symbols'].split(','))])
        self.routes[('GET', '/v2/positions')] = lambda q, b: (200, [self._pos(s, v) for s, v in self.positions.items() if v])
        self.routes[('GET', '/v2/account')] = lambda q, b: (200, {'id': '00000000-0000-0000-0000-00000000acc7', 'account_number': 'PA000TEST',
                                                                  'status': 'ACTIVE', 'currency': 'USD', 'cash': f"{self.cash:.2f}"})
        self.pattern_routes.append(('GET', re.compile(r'/v2/orders/([0-9a-f-]+)'), lambda q, b, m: self._get(m.group(1))))
        self.pattern_routes.append(('DELETE', re.compile(r'/v2/orders/([0-9a-f-]+)'), lambda q, b, m: self._cancel(m.group(1))))
        base = self._handle
        def _handle(h, method):
            if method == 'POST' and urlsplit(h.path).path == '/v2/orders':
                special = self.create.popleft() if self.create else None
                if isinstance(special, Fault):
                    with self._lock: self.log.append(Request(time.monotonic(), method, '/v2/orders', {}))
                    return self._send(h, special.status, special.body or self.default_error_body(special.status), special.headers)
                if special == 'timeout_before_commit':
                    with self._lock: self.log.append(Request(time.monotonic(), method, '/v2/orders', {}))
                    time.sleep(self.client_timeout_s + 0.5); return self._send(h, 504, self.default_error_body(504))
                if special == 'commit_then_504':
                    self._after_commit = 504
            return base(h, method)
        self._handle, self._after_commit = _handle, None

    _SESSION_IN_ID = re.compile(r'qs[0-9a-f]{8}-([0-9a-f]+)-[0-9a-f]+')

    def _price(self, sym, cid):
        if sym in self.prices: return float(self.prices[sym])
        df = self.bars[sym]
        m = self._SESSION_IN_ID.fullmatch(cid or '')
        if m:                                            # the session whose close the id names (the shared files are session-dated)
            day = pd.Timestamp(int(m.group(1), 16), tz='UTC').tz_convert('America/New_York').normalize().tz_localize(None)
            i = int(np.searchsorted(df.index.tz_localize(None).normalize(), day, side='right')) - 1
            return float(df.close.iloc[max(0, i)])
        return float(df.close.iloc[-1])

    def _json(self, o):
        return {k: v for k, v in o.items() if not k.startswith('_')}

    def _pos(self, sym, qty):
        return {'asset_id': '00000000-0000-0000-0000-000000000001', 'symbol': sym, 'exchange': 'ARCA', 'asset_class': 'us_equity',
                'avg_entry_price': '0', 'qty': f"{qty:g}", 'side': 'long' if qty > 0 else 'short', 'cost_basis': '0'}

    def _submit(self, q, body):
        req = json.loads(body or '{}')
        sym, cid, qty, side = req.get('symbol'), req.get('client_order_id'), float(req.get('qty', 0)), req.get('side')
        if sym not in self.bars: return 422, {'code': 42210000, 'message': f"asset {sym} not found"}
        if any(o['client_order_id'] == cid for o in self.orders):
            return 422, {'code': 40010001, 'message': 'client_order_id must be unique'}
        price = self._price(sym, cid)
        if side == 'buy' and qty*price > self.cash + 1e-9: return 403, {'code': 40310000, 'message': 'insufficient buying power'}
        if side == 'sell' and qty > self.positions.get(sym, 0.0) + 1e-12: return 403, {'code': 40310000, 'message': 'insufficient qty available for order'}
        now = pd.Timestamp.now('UTC').isoformat()
        o = {'id': f"00000000-0000-4000-8000-{next(self._ids):012d}", 'client_order_id': cid, 'created_at': now, 'updated_at': now,
             'submitted_at': now, 'filled_at': now, 'order_class': 'simple', 'time_in_force': req.get('time_in_force', 'day'),
             'status': 'filled', 'extended_hours': False, 'symbol': sym, 'qty': f"{qty:g}", 'filled_qty': f"{qty:g}",
             'filled_avg_price': f"{price}", 'side': side, 'type': req.get('type', 'market'), 'asset_class': 'us_equity'}
        self.orders.append(o)
        self.positions[sym] = self.positions.get(sym, 0.0) + (qty if side == 'buy' else -qty)
        self.cash -= (1 if side == 'buy' else -1)*qty*price
        if self._after_commit: code, self._after_commit = self._after_commit, None; return code, {'code': 50410000, 'message': 'gateway timeout'}
        return 200, self._json(o)

    def _by_cid(self, q, body):
        o = next((o for o in self.orders if o['client_order_id'] == q.get('client_order_id')), None)
        return (200, self._json(o)) if o else (404, {'code': 40410000, 'message': 'order not found'})

    def _get(self, oid):
        o = next((o for o in self.orders if o['id'] == oid), None)
        return (200, self._json(o)) if o else (404, {'code': 40410000, 'message': 'order not found'})

    def _cancel(self, oid):
        o = next((o for o in self.orders if o['id'] == oid), None)
        if o is None: return 404, {'code': 40410000, 'message': 'order not found'}
        if o['status'] not in ('new', 'partially_filled'): return 422, {'code': 42210000, 'message': 'order is not cancelable'}
        o['status'] = 'canceled'; return 204, {}

class FakeBinanceStream:
    """Binance's market-data websocket on loopback (`ws://127.0.0.1:PORT/ws`), for ccxt.pro: answers SUBSCRIBE, and sends
    kline messages the test pushes (`kline(symbol_id, open_ms, row, closed)`); `drop(n)` swallows the next n messages
    (a stream that loses data), `disconnect()` closes every connection."""
    def __init__(self):
        import asyncio
        self.clients, self.subscriptions, self.sent, self.dropping = set(), [], [], 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True); self._thread.start(); self._ready.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}"

    def _run(self):
        import asyncio
        from websockets.asyncio.server import serve
        self.loop = asyncio.new_event_loop()
        async def handler(ws):
            self.clients.add(ws)
            try:
                async for msg in ws:
                    m = json.loads(msg); self.subscriptions.append(m)
                    if m.get('method') == 'SUBSCRIBE': await ws.send(json.dumps({'result': None, 'id': m['id']}))
            except Exception: pass
            finally: self.clients.discard(ws)
        async def main():
            self.server = await serve(handler, '127.0.0.1', 0)
            self.port = self.server.sockets[0].getsockname()[1]
            self._ready.set()
            await self.server.serve_forever()
        try: self.loop.run_until_complete(main())
        except Exception: pass

    def _call(self, coro_fn):
        import asyncio
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(10)

    def kline(self, sid, open_ms, row, closed, interval='1h', step_ms=3_600_000):
        "Send one kline update (row: open, high, low, close, volume) to every connection."
        msg = {'e': 'kline', 'E': open_ms + (step_ms if closed else 1000), 's': sid,
               'k': {'t': open_ms, 'T': open_ms + step_ms - 1, 's': sid, 'i': interval, 'f': 1, 'L': 2, 'o': repr(float(row[0])), 'h': repr(float(row[1])),
                     'l': repr(float(row[2])), 'c': repr(float(row[3])), 'v': repr(float(row[4])), 'n': 1, 'x': bool(closed), 'q': '0', 'V': '0', 'Q': '0', 'B': '0'}}
        if self.dropping: self.dropping -= 1; return
        async def send():
            for c in list(self.clients): await c.send(json.dumps(msg))
        self._call(send); self.sent.append(msg)

    def drop(self, n): self.dropping = n

    def connected(self)->int: return len(self.clients)

    def stop(self):
        async def close():
            self.server.close()
        try: self._call(close)
        except Exception: pass
        self.loop.call_soon_threadsafe(self.loop.stop)
    def __enter__(self): return self
    def __exit__(self, *exc): self.stop()

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
import pandas as pd

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
                         'quotePrecision': 8, 'permissionSets': [['SPOT']],
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

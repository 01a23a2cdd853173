"""A seeded soak of the live order path: each seed draws a fault plan (timeouts with and without the venue taking the order,
504 after the venue took it, 429 and 503 before, partial fills, fills reported twice or newest first, orders invisible
right after create) and crash points, runs the session to the end through every crash and restart, then checks the invariants.

The seeds run in worker processes (4 at a time: the runs mostly wait on timeouts). Failing seeds are written, with their
plans and errors, to reports/live-soak-failures.json; one replays alone, in this process, with
`QUANTSAGE_SOAK_SEEDS=17 pytest tests/live/test_soak.py` (the same plan, crashes and bars). `QUANTSAGE_SOAK_SEEDS=0-999` runs a
longer soak."""
import json, os, random, time, traceback
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from pathlib import Path
import pandas as pd, pytest
from quantsage.execution.live import CRASH_POINTS
from tests.venues.fake_venue import FakeBinanceTrading, Fault
from .conftest import KEY, SECRET, run, check_invariants

def seeds():
    spec = os.environ.get('QUANTSAGE_SOAK_SEEDS', '0-199')
    out = []
    for part in spec.split(','):
        a, _, b = part.partition('-')
        out += list(range(int(a), int(b or a) + 1))
    return out

POINTS = [p for p in CRASH_POINTS if p not in ('during_breaker_trip',)]      # breaker trips: test_crash_points and the F17 test

def plan(seed:int)->dict:
    "The seed's faults and crashes (deterministic)."
    r = random.Random(seed)
    create = []
    for _ in range(12):                                       # the first 12 order POSTs
        x = r.random()
        create.append('commit_then_timeout' if x < .06 else 'timeout_before_commit' if x < .10 else 'commit_then_504' if x < .13 else
                      Fault.http(429, **{'Retry-After': '0.2'}) if x < .16 else Fault.http(503) if x < .18 else None)
    crashes = [(r.choice(POINTS), r.randint(1, 4)) for _ in range(r.choice([0, 1, 1, 2, 3]))]
    return dict(create=create, fills=r.choice([1, 1, 2, 3, 5]), dup=r.random() < .3, hide=r.choice([0, 0, 0.3]),
                policy=r.choice(['abandon', 'resend']), crashes=crashes, start=r.randint(0, 60), bars=r.choice([90, 120]),
                rev=r.random() < .3)

def _bars():
    from quantsage.testing import shared_data
    raw = pd.read_csv(shared_data('binance_BTCUSDT_1h.csv'), index_col='timestamp')
    raw.index = pd.to_datetime(raw.index, utc=True)
    return raw.loc['2023-01-01':'2023-03-01']

def soak_seed(seed:int, folder:str)->dict:
    "One seed: its faults and crashes, the session run to the end through restarts, the invariants checked. Raises on a violation."
    from quantsage.data.store import Store
    p = plan(seed)
    bars = _bars().iloc[p['start']:p['start'] + p['bars']]
    t0 = time.perf_counter()
    with FakeBinanceTrading({'BTCUSDT': bars}, now=pd.Timestamp('2024-01-01', tz='UTC'), key=KEY, secret=SECRET, cash=50_000,
                            client_timeout_s=0.3) as fv, Store(f"sqlite:///{folder}/soak-{seed}.sqlite") as store:
        fv.faults_trading.create.extend(p['create'])
        fv.faults_trading.fills_per_order, fv.faults_trading.duplicate_trades, fv.faults_trading.hide_s = p['fills'], p['dup'], p['hide']
        fv.faults_trading.reversed_trades = p['rev']
        kw = dict(fast=3, slow=8, unknown_policy=p['policy'], absence_wait_s=0.6, not_found_lookups=2, timeout_ms=300)
        crashed = 0
        for point, n in p['crashes']:
            crashed += run(fv, store, bars, crash=point, n=n, **kw)
        for _ in range(3):                                    # then to the end (a crash point never reached crashes nothing)
            if not run(fv, store, bars, **kw): break
        else: raise AssertionError(f"seed {seed}: the session did not finish")
        orders, trades = check_invariants(store, fv)
        return dict(seed=seed, orders=len(fv.orders), posts=len(fv.creates()), crashes=crashed, s=time.perf_counter() - t0,
                    abandoned=int((orders.status == 'abandoned').sum()), rejected=int((orders.status == 'rejected').sum()))

def _guarded(seed, folder):
    try: return soak_seed(seed, folder)
    except BaseException as e: return dict(seed=seed, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(), plan=repr(plan(seed)))

SOAK = []

def test_soak(tmp_path):
    todo = seeds()
    if len(todo) == 1:                                         # a replay: in this process, the error raised as it is
        SOAK.append(soak_seed(todo[0], str(tmp_path))); return
    with ProcessPoolExecutor(4, mp_context=mp.get_context('spawn')) as pool:
        results = list(pool.map(_guarded, todo, [str(tmp_path)]*len(todo)))
    failed = [r for r in results if 'error' in r]
    SOAK.extend(r for r in results if 'error' not in r)
    if failed:
        out = Path(__file__).resolve().parents[2]/'reports'/'live-soak-failures.json'
        out.parent.mkdir(exist_ok=True); out.write_text(json.dumps(failed, indent=1))
    assert not failed, (f"{len(failed)} of {len(todo)} seeds broke an invariant; replay one with QUANTSAGE_SOAK_SEEDS=<seed>; details in "
                        f"reports/live-soak-failures.json; first: seed {failed[0]['seed']}: {failed[0]['error']}")
    df = pd.DataFrame(SOAK)
    assert len(df) == len(todo) and df.crashes.sum() > len(todo)//2 and df.orders.sum() > 5*len(todo)   # the soak really trades and crashes

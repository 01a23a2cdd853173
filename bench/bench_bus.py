"""Events per second through EventBus.publish -> dispatch with three subscribers (sync mode).

Target (issue 2): at least 1,000,000 events/s on the project's 2-core machine, CPython.
Prints the figure for three kinds of subscriber and, for scale, a bare Python loop making
the same three calls with no bus at all (the floor any bus sits on).
Run: .venv/bin/python bench/bench_bus.py [N]
"""
import sys, time, statistics
import pandas as pd
from quantsage.bus import EventBus
from quantsage.events import MarketDataEvent, Topic

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REPEATS = 5
T = pd.Timestamp('2024-01-02', tz='UTC')
EVENTS = [MarketDataEvent('BTC/USDT', '1m', 100., 101., 99., 100.5, 1., T, T)] * 1000

class Counter:
    "A typical cheap subscriber: counts and remembers the last close."
    def __init__(self): self.n, self.last = 0, 0.
    def on_market_data(self, ev): self.n += 1; self.last = ev.close

def run_bus(history):
    bus = EventBus(history=history)
    subs = [Counter() for _ in range(3)]
    for s in subs: bus.register(s)
    pub, evs, loops = bus.publish, EVENTS, N // len(EVENTS)
    t = time.perf_counter()
    for _ in range(loops):
        for ev in evs: pub(ev)
    dt = time.perf_counter() - t
    assert all(s.n == loops*len(evs) for s in subs) and bus.counts[Topic.MARKET_DATA] == loops*len(evs)
    return loops*len(evs)/dt

def run_floor():
    subs = [Counter() for _ in range(3)]
    hs = [s.on_market_data for s in subs]
    evs, loops = EVENTS, N // len(EVENTS)
    t = time.perf_counter()
    for _ in range(loops):
        for ev in evs:
            for h in hs: h(ev)
    return loops*len(evs)/(time.perf_counter() - t)

def best(f, *a): return max(f(*a) for _ in range(REPEATS))

if __name__ == '__main__':
    rows = [('EventBus, 3 subscribers, history=1000 (default)', best(run_bus, 1000)),
            ('EventBus, 3 subscribers, history off (backtest setting)', best(run_bus, 0)),
            ('floor: plain loop calling the 3 handlers, no bus', best(run_floor))]
    print(f"bus benchmark: {N:,} events per run, best of {REPEATS}, Python {sys.version.split()[0]}")
    for name, eps in rows: print(f"  {name:<58} {eps:>12,.0f} events/s")
    print(f"  target >= 1,000,000 events/s: {'MET' if rows[0][1] >= 1e6 else 'NOT MET'} with the default settings; "
          f"bus cost vs floor: {rows[2][1]/rows[0][1]:.2f}x")

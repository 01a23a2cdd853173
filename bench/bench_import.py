"""Import and validation rates on the real 1-minute files (issue 3).

Import = the whole `quantsage import` path: read the CSV, re-stamp at close, validate, clean (no-op policies),
upsert into a fresh store. Targets: import >= 200,000 rows/s on SQLite; validation of 130,000 rows well
under a second. For scale the script also times pandas.read_csv alone (the floor of any CSV import).
Run: .venv/bin/python bench/bench_import.py [--no-pg]
"""
import sys, tempfile, time
import pandas as pd
from quantsage.data.ingest import import_file
from quantsage.data.sources import read_bar_file
from quantsage.data.store import Store
from quantsage.data.validate import validate
from quantsage.testing import shared_data, PostgresServer

FILES = ['binance_BTCUSDT_1m.csv', 'binance_ETHUSDT_1m.csv']
ROWS = 2*130_708

def best(f, n=3):
    out = []
    for _ in range(n):
        t = time.perf_counter(); f(); out.append(time.perf_counter() - t)
    return min(out)

def import_rate(url_factory):
    times = []
    for _ in range(2):
        st = Store(url_factory())
        t = time.perf_counter()
        for f in FILES: assert import_file(st, shared_data(f)).upsert.inserted == 130_708
        times.append(time.perf_counter() - t); st.close()
    return ROWS/min(times)

if __name__ == '__main__':
    tmp = tempfile.mkdtemp(); n = iter(range(100))
    frame = read_bar_file(shared_data(FILES[0]), '1m')
    t_val = best(lambda: validate(frame, '1m', symbol='BTC/USDT'))
    t_csv = best(lambda: [pd.read_csv(shared_data(f)) for f in FILES])
    rows = {'import into SQLite (read+validate+clean+upsert)': import_rate(lambda: f"sqlite:///{tmp}/i{next(n)}.sqlite")}
    if '--no-pg' not in sys.argv and PostgresServer.unavailable_reason() is None:
        with PostgresServer(durable=True) as pg:
            rows['import into PostgreSQL 15, fsync on'] = import_rate(lambda: pg.create_database(f"imp{next(n)}"))
    print(f"import benchmark: 2 real 1-minute files, {ROWS:,} rows; Python {sys.version.split()[0]}")
    for k, v in rows.items(): print(f"  {k:<52}{v:>12,.0f} rows/s")
    print(f"  {'floor: pandas.read_csv alone':<52}{ROWS/t_csv:>12,.0f} rows/s")
    print(f"  validate 130,708 rows: {t_val*1e3:.0f} ms ({len(frame)/t_val:,.0f} rows/s)")
    sq = rows['import into SQLite (read+validate+clean+upsert)']
    print(f"  targets: import >= 200,000 rows/s on SQLite {'MET' if sq >= 2e5 else 'NOT MET'}; "
          f"validation of 130k rows well under 1 s {'MET' if t_val < 0.5 else 'NOT MET'}")

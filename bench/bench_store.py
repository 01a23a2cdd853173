"""Bulk insert and range read of 1,000,000+ bars through the QuantSage store, on SQLite and PostgreSQL.

Data: the real Binance 1-minute files from the shared data folder (BTC/USDT and ETH/USDT, 130,708 bars each),
each written under 4 symbol names: 8 x 130,708 = 1,045,664 bars. Targets (issue 2, SQLite): insert >= 200,000
bars/s, read into a DataFrame >= 1,000,000 bars/s. Peers run in the same script on the same bars:
pandas to_sql/read_sql over Python's sqlite3 (the everyday notebook approach) and plain sqlite3
executemany/fetchall. PostgreSQL runs on a fresh throwaway cluster with durable settings (fsync on).
Run: .venv/bin/python bench/bench_store.py [--no-pg]
"""
import os, sqlite3, sys, tempfile, time
import numpy as np, pandas as pd
from quantsage.data.bars import check_bars
from quantsage.data.sources import read_bar_file
from quantsage.data.store import Store
from quantsage.testing import shared_data, PostgresServer

def load(name):
    return check_bars(read_bar_file(shared_data(name), '1m'), name)

FILES = {'BTC/USDT': load('binance_BTCUSDT_1m.csv'), 'ETH/USDT': load('binance_ETHUSDT_1m.csv')}
SETS = [(f"{sym}#{k}", bars) for sym, bars in FILES.items() for k in range(4)]
N = sum(len(b) for _, b in SETS)

def timed(f):
    t = time.perf_counter(); r = f(); return time.perf_counter() - t, r

def bench_store(url):
    st = Store(url)
    t_ins, res = timed(lambda: [st.write_bars(b, s, '1m', venue='binance') for s, b in SETS])
    assert sum(r.inserted for r in res) == N
    t_re, res = timed(lambda: [st.write_bars(b, s, '1m', venue='binance') for s, b in SETS])
    assert sum(r.unchanged for r in res) == N
    t_rd, frames = timed(lambda: [st.read_bars(s, '1m', venue='binance') for s, _ in SETS])
    assert sum(len(f) for f in frames) == N and frames[0].to_numpy().tobytes() == SETS[0][1].to_numpy().tobytes()
    day = SETS[0][1].index[50_000]
    t_day, d = timed(lambda: st.read_bars(SETS[0][0], '1m', start=day, end=day + pd.Timedelta(days=1), venue='binance'))
    assert len(d) == 1441
    st.close()
    return {'insert': N/t_ins, 're-ingest (no change)': N/t_re, 'read': N/t_rd, 'read 1 day (ms)': t_day*1e3}

def bench_pandas_sqlite(path):
    con = sqlite3.connect(path)
    con.execute('PRAGMA journal_mode=WAL')
    con.execute('CREATE TABLE bars (symbol TEXT, ts INTEGER, open REAL, high REAL, low REAL, close REAL, volume REAL, PRIMARY KEY (symbol, ts))')
    def ins():
        for s, b in SETS:
            b.assign(symbol=s, ts=b.index.asi8).reset_index(drop=True).to_sql('bars', con, if_exists='append', index=False, chunksize=50_000)
        con.commit()
    t_ins, _ = timed(ins)
    t_rd, frames = timed(lambda: [pd.read_sql('SELECT ts, open, high, low, close, volume FROM bars WHERE symbol = ? ORDER BY ts', con, params=(s,))
                                  for s, _ in SETS])
    assert sum(len(f) for f in frames) == N
    con.close()
    return {'insert': N/t_ins, 'read': N/t_rd}

def bench_plain_sqlite3(path):
    con = sqlite3.connect(path)
    con.execute('PRAGMA journal_mode=WAL')
    con.execute('CREATE TABLE bars (symbol TEXT, ts INTEGER, open REAL, high REAL, low REAL, close REAL, volume REAL, PRIMARY KEY (symbol, ts)) WITHOUT ROWID')
    def ins():
        with con:
            for s, b in SETS:
                con.executemany('INSERT INTO bars VALUES (?,?,?,?,?,?,?)',
                                zip([s]*len(b), b.index.asi8.tolist(), *(b[c].tolist() for c in b.columns)))
    t_ins, _ = timed(ins)
    def rd():
        out = []
        for s, _ in SETS:
            rows = con.execute('SELECT ts, open, high, low, close, volume FROM bars WHERE symbol = ? ORDER BY ts', (s,)).fetchall()
            a = np.array(rows)
            out.append(pd.DataFrame(a[:, 1:], index=pd.to_datetime(a[:, 0].astype('int64'), utc=True)))
        return out
    t_rd, frames = timed(rd)
    assert sum(len(f) for f in frames) == N
    con.close()
    return {'insert': N/t_ins, 'read': N/t_rd}

if __name__ == '__main__':
    tmp = tempfile.mkdtemp()
    rows = {}
    rows['QuantSage Store, SQLite (WAL)'] = bench_store(f"sqlite:///{tmp}/qs.sqlite")
    rows['peer: pandas to_sql/read_sql, sqlite3'] = bench_pandas_sqlite(f"{tmp}/pandas.sqlite")
    rows['peer: plain sqlite3 executemany/fetchall'] = bench_plain_sqlite3(f"{tmp}/plain.sqlite")
    if '--no-pg' not in sys.argv:
        why = PostgresServer.unavailable_reason()
        if why: print('PostgreSQL skipped:', why)
        else:
            with PostgresServer(durable=True) as pg:
                rows['QuantSage Store, PostgreSQL 15 (fsync on)'] = bench_store(pg.create_database('bench'))
    print(f"store benchmark: {N:,} real 1-minute bars (8 x 130,708), Python {sys.version.split()[0]}")
    print(f"  {'':<44}{'insert bars/s':>15}{'re-ingest bars/s':>18}{'read bars/s':>14}{'1-day read ms':>15}")
    for name, r in rows.items():
        print(f"  {name:<44}{r['insert']:>15,.0f}{r.get('re-ingest (no change)', float('nan')):>18,.0f}{r['read']:>14,.0f}"
              f"{r.get('read 1 day (ms)', float('nan')):>15.1f}")
    q, p = rows['QuantSage Store, SQLite (WAL)'], rows['peer: pandas to_sql/read_sql, sqlite3']
    print(f"  SQLite vs pandas peer: insert {q['insert']/p['insert']:.1f}x, read {q['read']/p['read']:.1f}x")
    print(f"  targets (SQLite): insert >= 200,000/s {'MET' if q['insert'] >= 2e5 else 'NOT MET'}; "
          f"read >= 1,000,000/s {'MET' if q['read'] >= 1e6 else 'NOT MET'}")

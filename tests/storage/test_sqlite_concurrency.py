"""SQLite specifics: WAL mode, and concurrent use from threads and processes without corruption.

The bulk path (ADBC) carries its own SQLite library; Python's sqlite3 is another. The store keeps at most
one of them open on a file at a time in a process (see nbs/12_data.store.ipynb). These tests hammer that."""
import subprocess, sys, sqlite3, threading, textwrap
import pandas as pd
from quantsage.data.store import Store
from quantsage.events import SignalEvent
from quantsage.testing import synth_bars

def integrity(path):
    c = sqlite3.connect(path)
    try: return c.execute('PRAGMA integrity_check').fetchone()[0]
    finally: c.close()

def test_wal_mode(tmp_path):
    st = Store(f"sqlite:///{tmp_path}/s.sqlite")
    with st.connect() as c: assert c.exec_driver_sql('PRAGMA journal_mode').scalar() == 'wal'
    st.close()

def test_threads_mixing_bulk_and_sqlalchemy_paths(tmp_path):
    path = tmp_path/'t.sqlite'
    st = Store(f"sqlite:///{path}")
    T = pd.Timestamp('2024-01-01', tz='UTC')
    errors = []
    def writer(i):
        try:
            for k in range(5):
                st.write_bars(synth_bars(300, seed=i, freq='1h'), f'S{i}', '1h')
                st.read_bars(f'S{i}', '1h')
                st.write_events([SignalEvent(f'S{i}', 'long', .5, 'th', T, T)], run_id=f'r{i}')
                st.datasets()
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert errors == []
    assert st.datasets().bars.tolist() == [300]*6
    assert len(st.read_table('signals')) == 30
    st.close()
    assert integrity(path) == 'ok'

def test_two_processes_writing_the_same_file(tmp_path):
    path = tmp_path/'p.sqlite'
    Store(f"sqlite:///{path}").close()
    code = textwrap.dedent(f"""
        import sys
        from quantsage.data.store import Store
        from quantsage.testing import synth_bars
        st = Store('sqlite:///{path}')
        i = int(sys.argv[1])
        for k in range(8):
            st.write_bars(synth_bars(2000, seed=k, freq='1min'), f'P{{i}}', '1m')
            st.read_bars(f'P{{i}}', '1m')
        print('done', i)
    """)
    procs = [subprocess.Popen([sys.executable, '-c', code, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    st = Store(f"sqlite:///{path}")
    assert st.datasets().bars.tolist() == [2000, 2000]
    st.close()
    assert integrity(path) == 'ok'

def test_nested_store_calls_are_refused_not_run(tmp_path):
    "A store call inside store.begin() would open a second copy of SQLite on the file: refused, data intact."
    import asyncio, pytest
    from quantsage.core import StorageError
    path = tmp_path/'n.sqlite'
    st = Store(f"sqlite:///{path}")
    st.write_bars(synth_bars(10, freq='1h'), 'A', '1h')
    T = pd.Timestamp('2024-01-01', tz='UTC')
    with pytest.raises(StorageError, match='store call made while this thread already has the store open'):
        with st.begin() as c:
            c.exec_driver_sql("INSERT INTO signals (run_id, ts_event, ts_init, strategy_id, symbol, direction, confidence, reason) "
                              "VALUES ('r', 0, 0, 's', 'A', 'long', 0.5, '')")
            st.write_bars(synth_bars(10, seed=2, freq='1h'), 'B', '1h')
    assert st.read_table('signals').empty                                 # the outer transaction rolled back
    assert st.datasets().symbol.tolist() == ['A']
    async def two_tasks():
        async def holder():
            with st.connect() as c:
                await asyncio.sleep(0.05)                                     # holds the store across an await
                return c.exec_driver_sql('SELECT count(*) FROM market_data').scalar()
        async def other():
            await asyncio.sleep(0.01); return st.read_bars('A', '1h')
        return await asyncio.gather(holder(), other(), return_exceptions=True)
    held, other = asyncio.run(two_tasks())
    assert held == 10 and isinstance(other, StorageError)
    st.close()
    assert integrity(path) == 'ok'

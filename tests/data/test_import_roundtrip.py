"""Every file of the shared data imports, validates and round-trips through SQLite and PostgreSQL unchanged
(bit-equal floats, identical close stamps)."""
import os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from quantsage.data.ingest import import_file
from quantsage.data.sources import FileSource, read_bar_file, parse_shared_name
from quantsage.testing import shared_data_dir

FILES = sorted(p.name for p in shared_data_dir().glob('*.csv'))

def test_all_21_files_are_known():
    assert len(FILES) == 21 and all(parse_shared_name(shared_data_dir()/f) for f in FILES)

def test_every_file_round_trips_bit_equal(store):
    for name in FILES:
        d = parse_shared_name(shared_data_dir()/name)
        r = import_file(store, d.path)
        assert r.report.ok, name
        expected = read_bar_file(d.path, d.timeframe, d.stamp, d.calendar)
        assert r.upsert.inserted == len(expected), name
        back = store.read_bars(d.symbol, d.timeframe, venue=d.venue)
        assert back.index.equals(expected.index), name
        assert back.to_numpy().tobytes() == expected.to_numpy().tobytes(), name
        # and the CSV's decimal text parses to the same doubles Python's float() gives
        text = (shared_data_dir()/name).read_text().splitlines()[1].split(',')
        assert back.iloc[0].tolist() == [float(x) for x in text[1:]], name

def test_import_refuses_bad_file_and_stores_nothing(tmp_path, store):
    bad = tmp_path/'binance_XRPUSDT_1h.csv'
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
                   "2024-01-01T01:00:00Z,1.5,1.4,1.2,1.3,10\n2024-01-01T02:00:00Z,1.3,1.6,1.2,1.5,10\n")
    from quantsage.core import DataError
    with pytest.raises(DataError, match=r"XRP/USDT: data refused by high_below_open_close \(1, first at 2024-01-01 02:00:00\+00:00\)"):
        import_file(store, bad)
    assert store.datasets().empty
    r = import_file(store, bad, policies={'high_below_open_close': 'drop', 'gap': 'ffill'})
    assert r.upsert.inserted == 3 and [a['rule'] for a in r.report.actions][:2] == ['high_below_open_close', 'gap']
    assert store.read_bars('XRP/USDT', '1h').volume.tolist() == [10., 0., 10.]       # the filled bar is flat, zero volume

def test_naive_file_is_refused(tmp_path, store):
    p = tmp_path/'x.csv'
    p.write_text("timestamp,open,high,low,close,volume\n2024-01-01 00:00:00,1,2,0.5,1.5,10\n")
    from quantsage.core import DataError
    with pytest.raises(DataError, match='time stamps have no zone'):
        import_file(store, p, symbol='X', timeframe='1h')

def test_parquet_works_like_csv(tmp_path, store):
    src = shared_data_dir()/'us_GLD_1d_adj.csv'
    df = pd.read_csv(src); df['timestamp'] = pd.to_datetime(df.timestamp, utc=True)
    pq = tmp_path/'us_GLD_1d_adj.parquet'; df.to_parquet(pq)
    r = import_file(store, pq)
    assert (r.symbol, r.venue, r.upsert.inserted) == ('GLD', 'us-adj', 1638)
    assert store.read_bars('GLD', '1d').to_numpy().tobytes() == read_bar_file(src, '1d', 'session', 'XNYS').to_numpy().tobytes()

def test_cli_import(tmp_path):
    exe = str(Path(sys.executable).parent/'quantsage')
    url = f"sqlite:///{tmp_path}/i.sqlite"
    r = subprocess.run([exe, 'import', str(shared_data_dir()/'binance_ETHUSDT_1h.csv'), '--db-url', url], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'warnings: gap (27), zero_volume (3)' in r.stdout and 'stored ETH/USDT 1h @ binance: 73,265 inserted' in r.stdout
    bad = tmp_path/'bad.csv'
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,nan,10\n")
    r = subprocess.run([exe, 'import', str(bad), '--symbol', 'B', '--timeframe', '1h', '--db-url', url], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'B: data refused by nan_inf' in r.stderr

"""The storage suite: every test runs against SQLite and a real PostgreSQL server (see conftest.py)."""
import numpy as np, pandas as pd, pytest, sqlalchemy as sa
from quantsage.core import DataError, StorageError, SchemaVersionError
from quantsage.data import schema as S
from quantsage.data.store import Store, UpsertResult
from quantsage.data.bars import check_bars
from quantsage.data.sources import read_bar_file
from quantsage.events import (OrderEvent, FillEvent, SignalEvent, RiskAlertEvent, SystemEvent, PerformanceMetricEvent,
                              PositionUpdateEvent, MarketDataEvent)
from quantsage.config import Secret
from quantsage.testing import synth_bars, shared_data

T = pd.Timestamp('2024-01-02 11:00', tz='UTC')
EVIL = "BTC/USDT'; DROP TABLE orders;--"

def real_bars(name='binance_BTCUSDT_1h.csv', tf='1h'):
    return check_bars(read_bar_file(shared_data(name), tf), name)

def test_schema_created_with_every_table(store):
    with store.connect() as c: names = set(sa.inspect(c).get_table_names())
    assert set(S.TABLES) <= names
    assert store.schema_version() == S.LATEST_VERSION
    assert store.init_db() == S.LATEST_VERSION                       # idempotent

def test_real_data_round_trips_bit_equal(store):
    bars = real_bars()
    assert len(bars) == 73265
    r = store.write_bars(bars, 'BTC/USDT', '1h', venue='binance')
    assert r == UpsertResult(73265, 0, 0)
    back = store.read_bars('BTC/USDT', '1h')
    assert back.index.equals(bars.index)
    assert back.to_numpy().tobytes() == bars.to_numpy().tobytes()   # bit-equal floats
    assert list(back.dtypes) == [np.dtype('float64')]*5 and str(back.index.dtype) == 'datetime64[ns, UTC]'

def test_reingest_changes_nothing_and_corrections_are_counted(store):
    more = synth_bars(600, freq='1h')
    bars = more.iloc[:500]
    assert store.write_bars(bars, 'ETH/USDT', '1h', 'binance') == UpsertResult(500, 0, 0)
    with store.connect() as c: before = c.execute(sa.text("SELECT max(ingested_at) FROM market_data")).scalar()
    assert store.write_bars(bars, 'ETH/USDT', '1h', 'binance') == UpsertResult(0, 0, 500)
    with store.connect() as c: assert c.execute(sa.text("SELECT max(ingested_at) FROM market_data")).scalar() == before
    fixed = more.copy(); fixed.iloc[10, fixed.columns.get_loc('volume')] += 1
    assert store.write_bars(fixed, 'ETH/USDT', '1h', 'binance') == UpsertResult(100, 1, 499)
    assert store.read_bars('ETH/USDT', '1h').volume.iloc[10] == fixed.volume.iloc[10]

def _install_failing_trigger(store, ts_ns):
    "A database trigger that aborts the insert of one particular bar: a real mid-batch failure."
    with store.begin() as c:
        if store.backend == 'sqlite':
            c.exec_driver_sql(f"CREATE TRIGGER boom BEFORE INSERT ON market_data WHEN NEW.ts = {ts_ns} "
                              "BEGIN SELECT RAISE(ABORT, 'boom: injected failure'); END")
        else:
            c.exec_driver_sql("CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                              f"IF NEW.ts = {ts_ns} THEN RAISE EXCEPTION 'boom: injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
            c.exec_driver_sql("CREATE TRIGGER boom BEFORE INSERT ON market_data FOR EACH ROW EXECUTE FUNCTION boom()")

def test_failure_mid_batch_leaves_nothing(store):
    bars = synth_bars(1000, freq='1h')
    store.write_bars(bars.iloc[:100], 'BTC/USDT', '1h', 'binance')          # already stored: must survive as they were
    _install_failing_trigger(store, int(bars.index[700].as_unit('ns').value))
    changed = bars.copy(); changed['volume'] += 1                           # would update 100 rows and insert 900
    with pytest.raises(StorageError, match=r"write_bars BTC/USDT 1h: nothing was written: .*boom: injected failure"):
        store.write_bars(changed, 'BTC/USDT', '1h', 'binance')
    back = store.read_bars('BTC/USDT', '1h')
    assert len(back) == 100 and back.to_numpy().tobytes() == check_bars(bars.iloc[:100]).to_numpy().tobytes()

def test_bad_bars_are_refused_before_anything_is_written(store):
    bars = synth_bars(50, freq='1h'); bars.iloc[30, bars.columns.get_loc('close')] = np.nan
    with pytest.raises(DataError, match=r"X: NaN or infinite value in close at .* \(1 bar\)"):
        store.write_bars(bars, 'X', '1h')
    assert store.datasets().empty

def test_database_refuses_impossible_bars_even_without_python_checks(store):
    with pytest.raises(sa.exc.IntegrityError):
        with store.begin() as c:
            c.execute(S.market_data.insert().values(symbol='X', timeframe='1h', venue='', ts=0, asset_type='crypto',
                      open=1., high=.5, low=1., close=1., volume=1., ingested_at=0))

def test_injection_attempt_is_stored_and_read_back_as_data(store):
    bars = synth_bars(20, freq='1h')
    store.write_bars(bars, EVIL, '1h', venue="x'--")
    assert len(store.read_bars(EVIL, '1h')) == 20
    store.write_events([OrderEvent('qs-evil', EVIL, 'buy', 1, 'market', T, T, strategy_id="s'); DELETE FROM trades;--")])
    orders = store.read_table('orders')
    assert orders.symbol.tolist() == [EVIL] and orders.strategy_id.tolist() == ["s'); DELETE FROM trades;--"]
    assert set(store.datasets().symbol) == {EVIL}
    with pytest.raises(ValueError, match="unknown table"): store.read_table("orders; DROP TABLE trades")
    with store.connect() as c: assert {'orders', 'trades'} <= set(sa.inspect(c).get_table_names())

def test_ranges_bounds_and_errors(store):
    bars = synth_bars(48, freq='1h', start='2024-03-01')
    store.write_bars(bars, 'BTC/USDT', '1h', 'binance')
    sub = store.read_bars('BTC/USDT', '1h', start='2024-03-01 10:00', end=pd.Timestamp('2024-03-01 12:00', tz='UTC'))
    assert list(sub.index.hour) == [10, 11, 12]
    assert store.read_bars('BTC/USDT', '1h', start='2030-01-01').empty
    assert store.bar_range('BTC/USDT', '1h', 'binance')[2] == 48
    with pytest.raises(ValueError, match='naive datetime'): store.read_bars('BTC/USDT', '1h', end=__import__('datetime').datetime(2024, 3, 2))
    store.write_bars(bars, 'BTC/USDT', '1h', 'kraken')
    with pytest.raises(DataError, match=r"stored for several venues \(binance, kraken\): pass venue="): store.read_bars('BTC/USDT', '1h')
    with pytest.raises(DataError, match='is stored as crypto, not stock'): store.write_bars(bars, 'BTC/USDT', '1h', 'kraken', 'stock')

def test_events_one_transaction_and_duplicates_kept_once(store):
    evs = [SignalEvent('AAPL', 'long', .6, 'mr', T, T, 'z=-2.1'),
           OrderEvent('qs-1', 'AAPL', 'buy', 10, 'limit', T, T, limit_price=180., asset_type='stock'),
           FillEvent('qs-1', 'f-1', 'AAPL', 'buy', 4, 179.9, .5, T, T, asset_type='stock'),
           FillEvent('qs-1', 'f-2', 'AAPL', 'buy', 6, 180., .6, T, T, asset_type='stock'),
           FillEvent('qs-1', 'f-2', 'AAPL', 'buy', 6, 180., .6, T, T, asset_type='stock'),
           PositionUpdateEvent('AAPL', 10, 179.96, 0., 0., T, T, asset_type='stock'),
           PerformanceMetricEvent({'equity': 1e5, 'cash': 98_200.}, T, T),
           RiskAlertEvent('symbol', 'max_symbol_exposure_pct', 'warning', 'resized', T, T, data={'limit': .15}, symbol='AAPL'),
           SystemEvent('started', 'session started', T, T),
           MarketDataEvent('AAPL', '1d', 180., 181., 179., 180.5, 1e6, T, T, asset_type='stock')]
    counts = store.write_events(evs, run_id='run-1')
    assert counts == {'market_data': 1, 'signals': 1, 'orders': 1, 'trades': 2, 'positions': 1, 'performance_metrics': 2,
                      'risk_events': 1, 'system_events': 1}
    trades = store.read_table('trades', run_id='run-1')
    assert trades.fill_id.tolist() == ['f-1', 'f-2'] and trades.quantity.sum() == 10
    assert store.read_table('risk_events').data[0] == {'limit': .15}
    assert store.read_table('signals').ts_event[0] == T
    before = store.table_counts()
    with pytest.raises(StorageError, match='write_events: nothing was written'):
        store.write_events([SignalEvent('AAPL', 'exit', 1., 'mr', T, T),
                            SystemEvent('warning', 'oops', T, T, data={'key': Secret('K', 'sk-abcdef')})])
    assert store.table_counts() == before

def test_backtest_results_are_write_once(store):
    store.save_backtest_result('bt-1', 'sma_cross', ['BTC/USDT'], '1m', {'sharpe': 1.1, 'n_trades': 3}, {'fast': 10, 'slow': 30},
                               start=T, end=T, initial_cash=1e5, final_equity=1.01e5, fingerprint='abc')
    with pytest.raises(StorageError, match="'bt-1' already stored"):
        store.save_backtest_result('bt-1', 'sma_cross', ['BTC/USDT'], '1m', {}, {})
    row = store.read_table('backtest_results').iloc[0]
    assert row.metrics == {'sharpe': 1.1, 'n_trades': 3} and row.symbols == ['BTC/USDT'] and row.start_ts == T

def test_newer_schema_is_refused(backend_url):
    st = Store(backend_url)
    with st.begin() as c: c.execute(S.schema_version.insert().values(version=S.LATEST_VERSION + 1, applied_at=0, description='future'))
    with pytest.raises(SchemaVersionError, match='newer than this QuantSage knows'): st.init_db()
    st.close()

def test_migrations_apply_in_order_and_a_failing_one_rolls_back(backend_url, monkeypatch):
    st = Store(backend_url)
    st.write_bars(synth_bars(5), 'SPY', '1d', asset_type='stock')
    def add_note(conn): conn.exec_driver_sql("ALTER TABLE backtest_results ADD COLUMN note TEXT")
    def broken(conn):
        conn.exec_driver_sql("ALTER TABLE orders ADD COLUMN half_done TEXT")
        raise RuntimeError('migration 3 failed halfway')
    v = S.LATEST_VERSION
    monkeypatch.setattr(S, 'MIGRATIONS', S.MIGRATIONS + [(v + 1, 'note column', add_note), (v + 2, 'broken', broken)])
    monkeypatch.setattr(S, 'LATEST_VERSION', v + 2)
    with pytest.raises(RuntimeError, match='failed halfway'): st.init_db()
    assert st.schema_version() == v + 1                                  # the first applied and kept, the broken one rolled back
    with st.connect() as c:
        cols = {x['name'] for x in sa.inspect(c).get_columns('orders')}
        assert 'half_done' not in cols
        assert 'note' in {x['name'] for x in sa.inspect(c).get_columns('backtest_results')}
    assert len(st.read_bars('SPY', '1d')) == 5                           # data untouched
    st.close()

def test_store_refuses_foreign_database(tmp_path):
    import sqlite3
    c = sqlite3.connect(tmp_path/'foreign.sqlite'); c.execute('CREATE TABLE trades (x int)'); c.commit(); c.close()
    with pytest.raises(SchemaVersionError, match='no schema_version'): Store(f"sqlite:///{tmp_path}/foreign.sqlite")

def test_write_events_is_one_transaction_with_bars(store):
    bar = MarketDataEvent('SOL/USDT', '1h', 1., 2., .5, 1.5, 3., T, T)
    with pytest.raises(StorageError, match=r"nothing was written: .*cannot store as JSON: value\['o'\] is a object"):
        store.write_events([bar, SystemEvent('info', 'x', T, T, data={'o': object()})])
    assert store.datasets().empty
    store.write_events([MarketDataEvent('AAPL', '1d', 1., 2., .5, 1.5, 3., T, T, asset_type='stock')])
    with pytest.raises(DataError, match='is stored as stock, not crypto'):
        store.write_events([MarketDataEvent('BTC/USDT', '1h', 1., 2., .5, 1.5, 3., T, T),
                            MarketDataEvent('AAPL', '1d', 1., 2., .5, 1.5, 3., T + pd.Timedelta(days=1), T)])
    assert store.datasets().symbol.tolist() == ['AAPL']                   # the BTC bar of the refused batch is not kept
    counts = store.write_events([MarketDataEvent('AAPL', '1d', 1., 2., .5, 1.5, 3., T, T, asset_type='stock'),        # identical: no change
                                 MarketDataEvent('AAPL', '1d', 1., 2., .5, 1.6, 3., T + pd.Timedelta(days=1), T, asset_type='stock')])
    assert counts == {'market_data': 1}

def test_empty_range_is_float64(store):
    store.write_bars(synth_bars(5), 'SPY', '1d', asset_type='stock')
    empty = store.read_bars('SPY', '1d', start='2030-01-01')
    assert empty.empty and list(empty.dtypes) == [np.dtype('float64')]*5

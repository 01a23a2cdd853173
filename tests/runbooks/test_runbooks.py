"""Every runbook runs under papermill with small parameters, as a scheduler would run it; a failing run exits
with an error and leaves a readable error in the output notebook."""
import sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
RUNBOOKS = ROOT/'nbs'/'runbooks'
sys.path.insert(0, str(ROOT/'tests'))

def run(nb, out, **params):
    import papermill as pm
    return pm.execute_notebook(str(RUNBOOKS/nb), str(out), parameters=params, cwd=str(RUNBOOKS), kernel_name='python3', progress_bar=False)

def test_collect_runbook_from_a_loopback_venue(tmp_path):
    import pandas as pd
    from venues.fake_venue import FakeBinance
    from quantsage.testing import shared_data
    from quantsage.data.store import Store
    raw = pd.read_csv(shared_data('binance_ETHUSDT_1h.csv'), index_col='timestamp'); raw.index = pd.to_datetime(raw.index, utc=True)
    url = f"sqlite:///{tmp_path}/rb.sqlite"
    with FakeBinance({'ETHUSDT': raw}, now=pd.Timestamp('2026-01-01', tz='UTC')) as venue:
        nb = run('collect.ipynb', tmp_path/'out.ipynb', source='ccxt:binance', base_url=venue.url, symbols=['ETH/USDT'],
                 timeframe='1h', since='2024-01-01 01:00', end='2024-01-31 00:00', venue='binance', db_url=url)
    assert not nb.metadata.papermill.exception
    with Store(url) as st: assert st.bar_range('ETH/USDT', '1h', 'binance')[2] == 720
    assert 'done: 720 bars inserted' in (tmp_path/'out.ipynb').read_text()

def test_collect_runbook_failure_is_an_error_with_a_readable_record(tmp_path):
    import papermill as pm
    url = f"sqlite:///{tmp_path}/rb.sqlite"
    with pytest.raises(pm.PapermillExecutionError) as e:
        run('collect.ipynb', tmp_path/'fail.ipynb', symbols=['NOPE/USDT'], db_url=url)
    assert 'failed and stored nothing: NOPE/USDT' in str(e.value)
    out = (tmp_path/'fail.ipynb').read_text()
    assert 'An Exception was encountered at' in out and 'NOPE/USDT' in out

def test_config_overrides_are_papermill_parameters_and_checked(tmp_path):
    import papermill as pm
    from quantsage.data.store import Store
    url = f"sqlite:///{tmp_path}/via_config.sqlite"
    run('collect.ipynb', tmp_path/'cfg.ipynb', config={'db': {'url': url}})
    with Store(url) as st: assert st.bar_range('BTC/USDT', '1m', 'binance')[2] == 29      # closes 18:00 .. 18:28
    with pytest.raises(pm.PapermillExecutionError) as e:
        run('collect.ipynb', tmp_path/'bad.ipynb', config={'risk': {'position': {'max_position_pct': 5}}})
    assert 'risk.position.max_position_pct must be a finite number > 0.0 and <= 1.0, got 5' in str(e.value)

def test_sweep_runbook_stores_its_rows_and_reports_failed_tasks(tmp_path):
    from quantsage.data.store import Store
    url = f"sqlite:///{tmp_path}/sw.sqlite"
    nb = run('sweep.ipynb', tmp_path/'sweep.ipynb', strategy='mean_reversion', symbols=['BTC/USDT', 'ETH/USDT'],
             params={'bb_period': {'low': 12, 'high': 30}, 'z_entry': [-1.5, -2.0]}, random=3, seed=4, workers=1,
             start='2024-01-01', end='2024-03-01', split='2024-02-01T00:00Z', db_url=url)
    assert not nb.metadata.papermill.exception
    with Store(url) as st: rows = st.read_table('sweep_results')
    assert len(rows) == 6 and set(rows.status) == {'ok'} and all(12 <= p['bb_period'] <= 30 for p in rows.params)
    assert 'done: sweep sw-' in (tmp_path/'sweep.ipynb').read_text()

def test_sweep_runbook_where_every_task_fails_is_an_error(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError) as e:
        run('sweep.ipynb', tmp_path/'bad.ipynb', params={'fast': [50], 'slow': [10]}, workers=1, db_url=f"sqlite:///{tmp_path}/x.sqlite")
    assert 'every task of the sweep failed' in str(e.value)
    assert 'slow' in (tmp_path/'bad.ipynb').read_text()                  # the strategy's own refusal is in the record

def test_walkforward_runbook_stores_its_folds(tmp_path):
    from quantsage.data.store import Store
    url = f"sqlite:///{tmp_path}/wf.sqlite"
    nb = run('walkforward.ipynb', tmp_path/'wf.ipynb', symbol='BTC/USDT', start='2024-01-01', end='2024-04-01', train=1000, test=500, db_url=url)
    assert not nb.metadata.papermill.exception
    assert 'WalkForwardResult(sma_cross on BTC/USDT: 2 folds' in (tmp_path/'wf.ipynb').read_text()
    with Store(url) as st: rows = st.read_table('sweep_results')
    assert len(rows) == 2 and rows.sweep_id.iloc[0].startswith('wf-') and [c['fold'] for c in rows.config] == [0, 1]

def test_validate_runbook_splits_by_regime_and_stores_the_table(tmp_path):
    from quantsage.data.store import Store
    url = f"sqlite:///{tmp_path}/va.sqlite"
    nb = run('validate.ipynb', tmp_path/'va.ipynb', symbols=['BTC/USDT', 'ETH/USDT'], start='2023-01-01', end='2024-01-01',
             train='120D', test='60D', db_url=url)
    assert not nb.metadata.papermill.exception
    text = (tmp_path/'va.ipynb').read_text()
    assert 'ValidationReport(mean_reversion: 2 datasets, 2 ran' in text and 'BTC/USDT 1h: out of sample' in text
    with Store(url) as st: rows = st.read_table('sweep_results')
    assert set(rows.symbol) == {'BTC/USDT 1h', 'ETH/USDT 1h'} and rows.sweep_id.nunique() == 1
    for ds, g in rows.groupby('symbol'):                      # per dataset: an overall row and regimes that cover every bar
        regimes = {p['regime']: m['share_of_bars'] for p, m in zip(g.params, g.metrics)}
        assert regimes.pop('overall') == 1.0 and abs(sum(regimes.values()) - 1) < 1e-9 and set(regimes) <= {'bull', 'bear', 'sideways', 'unknown'}

def test_validate_runbook_with_stock_presets_and_a_bad_preset(tmp_path):
    import papermill as pm
    nb = run('validate.ipynb', tmp_path/'st.ipynb', preset='momentum_stocks', symbols=['SPY'], venue='us-adj', params={},
             start='2019-01-01', end='', train='730D', test='365D', purge=1, db_url=f"sqlite:///{tmp_path}/s.sqlite")
    assert not nb.metadata.papermill.exception and 'SPY 1d: out of sample' in (tmp_path/'st.ipynb').read_text()
    with pytest.raises(pm.PapermillExecutionError) as e:
        run('validate.ipynb', tmp_path/'bad.ipynb', preset='nope', db_url=f"sqlite:///{tmp_path}/b.sqlite")
    assert "no strategy preset 'nope'" in str(e.value)

def test_every_runbook_parameter_is_visible_to_the_runner():
    "papermill's inspector skips a line it cannot parse; such a parameter would be refused by `quantsage run` as unknown."
    import json, re
    from quantsage.runs import runbook_parameters
    for nb in sorted(RUNBOOKS.glob('*.ipynb')):
        cell = next(c for c in json.loads(nb.read_text())['cells'] if 'parameters' in c.get('metadata', {}).get('tags', []))
        declared = [m.group(1) for line in ''.join(cell['source']).splitlines() if (m := re.match(r'(\w+)\s*:', line))]
        seen = runbook_parameters(nb)
        assert declared == list(seen), (nb.name, set(declared) ^ set(seen))
        assert all(v['help'] for v in seen.values()), nb.name                  # every parameter says what it is

def test_every_job_file_names_a_runbook_and_only_its_parameters():
    from quantsage.runs import RunSpec
    jobs = sorted((ROOT/'config'/'runs').glob('*.yaml'))
    assert len(jobs) >= 3
    for job in jobs:
        spec = RunSpec.from_job(job)
        assert spec.parameters and spec.job == job.stem

def test_a_job_with_a_misspelt_parameter_is_refused(tmp_path):
    from quantsage.core import ConfigError
    from quantsage.runs import RunSpec
    bad = tmp_path/'bad.yaml'
    bad.write_text("runbook: backtest\nparameters:\n  presett: momentum_crypto\n")
    with pytest.raises(ConfigError, match=r"has no parameter\(s\) \['presett'\]"): RunSpec.from_job(bad)
    bad.write_text("runbook: backtest\nparams: {}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['params'\]"): RunSpec.from_job(bad)

def test_backtest_runbook_stores_its_result_linked_to_its_record(tmp_path):
    from quantsage.data.store import Store
    url = f"sqlite:///{tmp_path}/bt.sqlite"
    out = tmp_path/'bt.ipynb'
    nb = run('backtest.ipynb', out, preset='momentum_crypto', symbols=['BTC/USDT'], timeframe='1h', source='file', venue='',
             start='2024-01-01', end='2024-03-01', params={'adx_min': 20.0}, db_url=url, record_path=str(out))
    assert not nb.metadata.papermill.exception
    text = out.read_text()
    assert 'BTC/USDT 1h' in text and 'stored run bt-' in text
    with Store(url) as st: runs = st.read_table('backtest_results')
    assert runs.report_path.tolist() == [str(out)] and runs.config.iloc[0]['params']['adx_min'] == 20.0

def test_backtest_runbook_with_bad_data_fails_with_a_readable_record(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError) as e:
        run('backtest.ipynb', tmp_path/'bad.ipynb', preset='', strategy='momentum', symbols=['AAPL'], timeframe='1h',
            db_url=f"sqlite:///{tmp_path}/b.sqlite")
    assert 'daily bars, not 1h' in str(e.value)
    assert 'daily bars, not 1h' in (tmp_path/'bad.ipynb').read_text()

def test_paper_trading_runbook_writes_the_session_and_matches_its_backtest(tmp_path):
    from quantsage.data.store import Store
    url = f"sqlite:///{tmp_path}/paper.sqlite"
    nb = run('paper_trading.ipynb', tmp_path/'paper.ipynb', symbols=['ETH/USDT'], start='2024-02-01', end='2024-03-01', max_bars=400,
             session_id='paper-rb', db_url=url)
    assert not nb.metadata.papermill.exception
    assert 'done: session paper-rb, 400 bars' in (tmp_path/'paper.ipynb').read_text()
    with Store(url) as st:
        snaps = st.read_table('performance_metrics', run_id='paper-rb')
        assert int((snaps.name == 'equity').sum()) == 400                       # one snapshot per bar, written as it went

def test_venue_session_runbook_trades_at_a_loopback_venue_and_resumes(tmp_path, monkeypatch):
    "The live runtime under papermill: a session at the loopback Binance (its paper account), then the same id resumed."
    import pandas as pd
    from venues.fake_venue import FakeBinanceTrading
    from quantsage.testing import shared_data
    from quantsage.data.store import Store
    raw = pd.read_csv(shared_data('binance_BTCUSDT_1h.csv'), index_col='timestamp'); raw.index = pd.to_datetime(raw.index, utc=True)
    raw = raw.loc['2024-01-01':'2024-01-20']
    url = f"sqlite:///{tmp_path}/v.sqlite"
    with Store(url) as st: st.write_bars(raw.set_axis(raw.index + pd.Timedelta('1h')), 'BTC/USDT', '1h', venue='binance')
    key, secret = 'QSCANARY-rb-key-55aa01', 'QSCANARY-rb-secret-77bb02'
    monkeypatch.setenv('BINANCE_API_KEY', key); monkeypatch.setenv('BINANCE_SECRET', secret)
    with FakeBinanceTrading({'BTCUSDT': raw}, now=pd.Timestamp('2024-03-01', tz='UTC'), key=key, secret=secret, cash=50_000) as fv:
        common = dict(preset='mean_reversion_crypto', symbols=['BTC/USDT'], venue='binance', feed='replay', base_url=fv.url,
                      session_id='rb-venue', db_url=url)
        nb = run('venue_session.ipynb', tmp_path/'v1.ipynb', max_bars=200, **common)
        assert not nb.metadata.papermill.exception
        text = (tmp_path/'v1.ipynb').read_text()
        assert 'done: session rb-venue at ccxt:binance, 200 bars' in text and key not in text and secret not in text
        run('venue_session.ipynb', tmp_path/'v2.ipynb', **common)
        text2 = (tmp_path/'v2.ipynb').read_text()
        assert 'ReconcileReport(ok' in text2 or 'store and venue agree' in text2
        with Store(url) as st:
            assert st.load_session_state('rb-venue')['last_bar'] == int((raw.index[-1] + pd.Timedelta('1h')).value)
            orders = st.read_table('orders', run_id='rb-venue')
            assert not set(orders.status) & {'intent', 'unknown'}
        assert {o.client_order_id for o in fv.orders} <= set(orders.client_order_id)

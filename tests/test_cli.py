"""The installed `quantsage` console command, run as a user would: in a subprocess."""
import os, subprocess, sys
from pathlib import Path
import pytest
from quantsage.data.schema import LATEST_VERSION

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent/'quantsage')

def qs(*args, env=None, cwd=ROOT):
    e = {**os.environ, **(env or {})}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=300)

@pytest.mark.parametrize('cmd', [[], ['info'], ['init-db'], ['demo'], ['backtest'], ['run'], ['validate']])
def test_help_on_every_subcommand(cmd):
    r = qs(*cmd, '--help')
    assert r.returncode == 0, r.stderr
    assert 'Usage: quantsage' in r.stdout

def test_version():
    r = qs('--version')
    assert r.returncode == 0 and r.stdout.startswith('quantsage 0.')

def test_init_db_and_info(tmp_path):
    url = f"sqlite:///{tmp_path}/cli.sqlite"
    r = qs('init-db', '--db-url', url)
    assert r.returncode == 0, r.stderr
    assert f"database sqlite:///{tmp_path}/cli.sqlite is at schema version {LATEST_VERSION}" in r.stdout
    r = qs('info', '--db-url', url)
    assert r.returncode == 0, r.stderr
    for needle in ('versions:', 'pandas', 'ccxt', f'schema version {LATEST_VERSION}', 'stored data sets: none', 'shared data:', 'binance_BTCUSDT_1h.csv',
                   'bundled samples: AAPL@quandl-wiki'):
        assert needle in r.stdout, needle

def test_info_masks_the_database_password():
    r = qs('info', env={'QUANTSAGE_DB_URL': 'postgresql://qs:s3cr3t-pw@127.0.0.1:1/qs'})
    assert r.returncode == 0, r.stderr
    assert 'postgresql://qs:***@127.0.0.1:1/qs' in r.stdout
    assert 'not reachable' in r.stdout
    assert 's3cr3t-pw' not in r.stdout + r.stderr

def test_demo_runs_the_backtest_runbook_on_real_samples_and_links_the_record(tmp_path):
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    r = qs('demo', '--db-url', url, '--no-progress', '--report-dir', str(tmp_path/'reports'))
    assert r.returncode == 0, r.stderr
    assert '13,467 bars inserted, 0 updated, 0 already stored and unchanged.' in r.stdout
    for needle in ('backtest runbook: mean_reversion_stocks on IBM, MSFT, GOOG', 'run ok in', 'stored result bt-', 'sharpe', 'max_drawdown',
                   'success criteria (the plan): sharpe > 1.5:'):
        assert needle in r.stdout, needle
    record = Path(r.stdout.split('record: ')[1].split()[0])
    assert record.parent == tmp_path/'reports'/'backtest' and record.name.startswith('backtest_mean_reversion_stocks_IBM-MSFT-GOOG_')
    assert 'papermill' in record.read_text() and 'stored run bt-' in record.read_text()     # the executed notebook is the record
    assert not os.stat(record).st_mode & 0o222                                            # written once, read-only
    report = Path(r.stdout.split('HTML report: ')[1].split()[0])
    assert report.parent == tmp_path/'reports' and report.stat().st_size > 100_000
    r2 = qs('demo', '--db-url', url, '--no-progress', '--no-report', '--report-dir', str(tmp_path/'reports'))
    assert r2.returncode == 0, r2.stderr
    assert '0 bars inserted, 0 updated, 13,467 already stored and unchanged.' in r2.stdout
    record2 = Path(r2.stdout.split('record: ')[1].split()[0])
    from quantsage.data.store import Store
    with Store(url) as st:
        assert st.datasets().bars.sum() == 13467
        assert st.read_bars('GOOG', '1d').index[0].isoformat() == '2004-08-19T20:00:00+00:00'
        runs = st.read_table('backtest_results')
        assert len(runs) == 2 and len(set(runs.fingerprint)) == 1             # two records of the same deterministic run
        assert sorted(runs.report_path) == sorted([str(record), str(record2)])

def test_run_refuses_unknown_parameters_and_secrets_before_running(tmp_path):
    r = qs('run', 'backtest', '-p', 'strategyy', 'momentum', '--reports-dir', str(tmp_path))
    assert r.returncode == 2 and "has no parameter(s) ['strategyy']" in r.stderr, r.stderr
    r = qs('run', 'backtest', '-p', 'db_url', 'postgresql://qs:hunter2@127.0.0.1/qs', '--reports-dir', str(tmp_path))
    assert r.returncode == 2 and 'URL with a password' in r.stderr and 'hunter2' not in r.stdout
    r = qs('run', 'backtest', '-p', 'risk', 'maybe', '--reports-dir', str(tmp_path))
    assert r.returncode == 2 and "'risk' is declared bool" in r.stderr
    assert not any(tmp_path.rglob('*.ipynb'))                                 # nothing ran, no record

def test_run_a_job_file_and_a_failing_run_exits_nonzero_with_its_record(tmp_path, shared_dir):
    url = f"sqlite:///{tmp_path}/job.sqlite"
    job = tmp_path/'eth_momentum.yaml'
    job.write_text(f"runbook: backtest\nschedule: '0 6 * * *'\nparameters:\n  preset: momentum_crypto\n  symbols: [ETH/USDT]\n"
                   f"  timeframe: 1h\n  source: file:{shared_dir}\n  venue: ''\n  start: '2024-01-01'\n  end: '2024-03-01'\n  db_url: {url}\n")
    r = qs('run', '--job', str(job), '--no-progress', '--reports-dir', str(tmp_path/'reports'))
    assert r.returncode == 0, r.stderr
    record = Path(r.stdout.split('record: ')[1].split()[0])
    assert record.parent == tmp_path/'reports'/'backtest' and record.name.startswith('backtest_eth_momentum_momentum_crypto_ETH-USDT_1h_')
    r = qs('run', 'backtest', '-p', 'symbols', 'NOPE', '-p', 'db_url', url, '--no-progress', '--reports-dir', str(tmp_path/'reports'))
    assert r.returncode == 1 and 'run FAILED' in r.stderr and 'NOPE' in r.stderr
    failed = Path(r.stderr.split('the record with the error: ')[1].split()[0])
    assert failed.exists() and 'NOPE' in failed.read_text()

def test_backtest_command_with_a_preset_and_params(tmp_path, shared_dir):
    url = f"sqlite:///{tmp_path}/bt.sqlite"
    r = qs('backtest', '--preset', 'momentum_crypto', '--symbols', 'ETH/USDT', '--source', f'file:{shared_dir}', '--start', '2023-01-01',
           '--end', '2023-12-31', '--param', 'adx_min=20', '--no-report', '--db-url', url)
    assert r.returncode == 0, r.stderr
    assert "momentum {'fast': 12, 'slow': 26, 'adx_period': 14, 'adx_min': 20.0" in r.stdout
    r = qs('backtest', '--strategy', 'mean_reversoin', '--symbols', 'ETH/USDT', '--source', f'file:{shared_dir}', '--db-url', url)
    assert r.returncode == 2 and "unknown strategy 'mean_reversoin'; did you mean 'mean_reversion'?" in r.stderr

@pytest.mark.parametrize('args, message', [
    (['--preset', 'mean_reversion_crypto', '--strategy', 'momentum'], 'contradicts --preset mean_reversion_crypto'),
    (['--strategy', 'momentum', '--source', 'bogus'], "source 'bogus': use ccxt:<exchange id>"),
    (['--strategy', 'momentum', '--start', 'not-a-date'], 'not-a-date'),
    (['--strategy', 'momentum', '--param', 'atr_period=0'], 'atr_period must be at least 1'),
    (['--strategy', 'momentum', '--policy', 'nonsense'], '--policy takes rule=policy'),
])
def test_backtest_command_refuses_bad_input_clearly(tmp_path, shared_dir, args, message):
    base = ['backtest', '--symbols', 'ETH/USDT', '--timeframe', '1h', '--source', f'file:{shared_dir}', '--no-report',
            '--db-url', f"sqlite:///{tmp_path}/bt.sqlite"]
    r = qs(*base, *args)
    assert r.returncode == 2 and message in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_bad_config_is_a_clear_error_with_exit_code_2():
    r = qs('--set', 'risk.portfolio.max_invested_pct=80', 'info')
    assert r.returncode == 2
    assert 'risk.portfolio.max_invested_pct must be a finite number > 0.0 and <= 1.0, got 80' in r.stderr
    r = qs('--set', 'risk.portfolio.max_invsted_pct=0.5', 'init-db')
    assert r.returncode == 2 and "Did you mean: 'max_invested_pct'?" in r.stderr

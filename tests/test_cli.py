"""The installed `quantsage` console command, run as a user would: in a subprocess."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXE = str(Path(sys.executable).parent/'quantsage')

def qs(*args, env=None, cwd=ROOT):
    e = {**os.environ, **(env or {})}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=300)

@pytest.mark.parametrize('cmd', [[], ['info'], ['init-db'], ['demo']])
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
    assert f"database sqlite:///{tmp_path}/cli.sqlite is at schema version 1" in r.stdout
    r = qs('info', '--db-url', url)
    assert r.returncode == 0, r.stderr
    for needle in ('versions:', 'pandas', 'ccxt', 'schema version 1', 'stored data sets: none', 'shared data:', 'binance_BTCUSDT_1h.csv',
                   'bundled samples: AAPL@quandl-wiki'):
        assert needle in r.stdout, needle

def test_info_masks_the_database_password():
    r = qs('info', env={'QUANTSAGE_DB_URL': 'postgresql://qs:s3cr3t-pw@127.0.0.1:1/qs'})
    assert r.returncode == 0, r.stderr
    assert 'postgresql://qs:***@127.0.0.1:1/qs' in r.stdout
    assert 'not reachable' in r.stdout
    assert 's3cr3t-pw' not in r.stdout + r.stderr

def test_demo_loads_real_samples_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path}/demo.sqlite"
    r = qs('demo', '--db-url', url, '--no-progress')
    assert r.returncode == 0, r.stderr
    assert '13,467 bars inserted, 0 updated, 0 already stored and unchanged.' in r.stdout
    r = qs('demo', '--db-url', url, '--no-progress')
    assert '0 bars inserted, 0 updated, 13,467 already stored and unchanged.' in r.stdout
    from quantsage.data.store import Store
    with Store(url) as st:
        assert st.datasets().bars.sum() == 13467
        assert st.read_bars('GOOG', '1d').index[0].isoformat() == '2004-08-19T20:00:00+00:00'

def test_bad_config_is_a_clear_error_with_exit_code_2():
    r = qs('--set', 'risk.portfolio.max_invested_pct=80', 'info')
    assert r.returncode == 2
    assert 'risk.portfolio.max_invested_pct must be a finite number > 0.0 and <= 1.0, got 80' in r.stderr
    r = qs('--set', 'risk.portfolio.max_invsted_pct=0.5', 'init-db')
    assert r.returncode == 2 and "Did you mean: 'max_invested_pct'?" in r.stderr

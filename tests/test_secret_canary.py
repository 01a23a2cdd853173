"""Canary-key test: a secret set in the environment (through .env) never reaches the database, a log,
the console or an executed notebook, even when code prints, logs and stores the Secret object itself.

Each place is scanned for the canary; a positive control proves the scanner finds it when it is there."""
import json, logging, os, subprocess, sys, textwrap, uuid
from pathlib import Path
import nbformat, pandas as pd, pytest

ROOT = Path(__file__).resolve().parent.parent
CANARY = f"CANARY-{uuid.uuid4().hex}"

def leaks(paths):
    "Files under `paths` whose bytes contain the canary."
    hits = []
    for p in paths:
        for f in ([p] if p.is_file() else [x for x in p.rglob('*') if x.is_file()]):
            if CANARY.encode() in f.read_bytes(): hits.append(str(f))
    return hits

@pytest.fixture
def project(tmp_path):
    "A project folder with the real config/ and a .env holding the canary key."
    import shutil
    shutil.copytree(ROOT/'config', tmp_path/'config')
    (tmp_path/'.env').write_text(f"BINANCE_API_KEY={CANARY}\nBINANCE_SECRET={CANARY}-secret\n")
    (tmp_path/'data').mkdir()
    return tmp_path

def test_scanner_finds_the_canary_when_it_is_there(tmp_path):
    (tmp_path/'x.bin').write_bytes(b'prefix ' + CANARY.encode())
    assert leaks([tmp_path]) == [str(tmp_path/'x.bin')]

SCRIPT = textwrap.dedent("""
    import logging, sys, pandas as pd
    from quantsage.config import load_config, secret
    from quantsage.data.store import Store
    from quantsage.events import SystemEvent, RiskAlertEvent
    logging.basicConfig(filename=sys.argv[1], level=logging.DEBUG, force=True)
    cfg = load_config('config')
    key = secret(cfg.venues.binance.api_key_env)
    assert key.reveal().startswith('CANARY-')                     # the secret really is loaded
    T = pd.Timestamp('2024-01-01', tz='UTC')
    print('config:', cfg, 'key:', key, repr(key), f'{key}')
    logging.getLogger('quantsage.test').info('connecting with key %s (%r)', key, key)
    logging.getLogger('ccxt.base').debug('request headers X-MBX-APIKEY: %s', key.reveal())   # a client library's debug line
    try: raise ConnectionError(f'401 Unauthorized for apiKey={key.reveal()}')
    except ConnectionError: logging.getLogger('ccxt').exception('request failed')        # traceback holds the key
    from quantsage.bus import EventBus
    from quantsage.events import Topic, MarketDataEvent
    bus, failures = EventBus(), []
    def venue_call(ev): raise PermissionError(f'venue rejected key {key.reveal()}')
    bus.subscribe(Topic.MARKET_DATA, venue_call); bus.subscribe(Topic.SYSTEM, failures.append)
    bus.publish(MarketDataEvent('BTC/USDT', '1h', 1., 2., .5, 1.5, 1., T, T))
    assert len(failures) == 1
    with Store(cfg.db.url, cfg=cfg) as st:
        st.write_events([SystemEvent('info', f'venue key is {key}', T, T, data={'key': str(key)})], run_id=f'{key!r}')
        st.write_events(failures, run_id='bus-failures')                                   # message + traceback quoted the key
        st.write_events([SystemEvent('info', 'careless: ' + key.reveal(), T, T, data={'raw': key.reveal()})])
        try: st.write_events([RiskAlertEvent('system', 'r', 'info', 'm', T, T, data={'key': key})])
        except Exception as e: print('refused:', e)
        assert len(st.read_table('system_events')) == 3
""")

def test_canary_never_leaks(project):
    log = project/'run.log'
    env = {k: v for k, v in os.environ.items() if k not in ('BINANCE_API_KEY', 'BINANCE_SECRET', 'QUANTSAGE_DB_URL', 'QUANTSAGE_CONFIG')}
    r = subprocess.run([sys.executable, '-c', SCRIPT, str(log)], cwd=project, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'refused: write_events: nothing was written' in r.stdout
    assert "Secret('BINANCE_API_KEY', '***')" in r.stdout
    assert CANARY not in r.stdout + r.stderr
    assert log.read_text().count('***') >= 3 and 'connecting with key' in log.read_text()
    assert 'ConnectionError: 401 Unauthorized for apiKey=***' in log.read_text()
    db = project/'data'/'quantsage.sqlite'
    assert db.exists()
    assert leaks([project/'data', log]) == []
    # the CLI, with the key in the environment
    exe = str(Path(sys.executable).parent/'quantsage')
    r = subprocess.run([exe, 'info'], cwd=project, capture_output=True, text=True, env={**env, 'BINANCE_API_KEY': CANARY}, timeout=120)
    assert r.returncode == 0 and CANARY not in r.stdout + r.stderr

def test_canary_never_reaches_an_executed_notebook(project):
    "A notebook that loads the key, displays it and logs it: the saved outputs hold no canary."
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (
        "import logging, sys; logging.basicConfig(stream=sys.stdout, level=logging.INFO, force=True)",
        "from quantsage.config import load_config, secret\ncfg = load_config('config')\nkey = secret('BINANCE_API_KEY')\nkey",
        "print(key, f'{key}', str(key)); logging.getLogger('x').info('key=%s', key.reveal())",
        "assert key.reveal().startswith('CANARY-')\ncfg.venues")])
    env_before = dict(os.environ)
    try:
        os.environ.pop('BINANCE_API_KEY', None)
        NotebookClient(nb, timeout=120, kernel_name='python3', resources={'metadata': {'path': str(project)}}).execute()
    finally:
        os.environ.clear(); os.environ.update(env_before)
    out = project/'executed.ipynb'
    nbformat.write(nb, out)
    assert "Secret('BINANCE_API_KEY', '***')" in out.read_text()
    assert leaks([out]) == []

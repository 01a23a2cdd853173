"""A real `panel serve` of nbs/apps/dashboard.ipynb on a free loopback port, and Debian's Chromium for pytest-playwright.

The browser is the system `chromium` (installed by .ci/setup); Playwright's own browser download is never used. Failing
tests leave a screenshot under reports/ui-artifacts (pytest-playwright's --screenshot only-on-failure, set in pyproject)."""
import os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage']

@pytest.fixture(scope='session')
def browser_type_launch_args(browser_type_launch_args):
    exe = shutil.which('chromium')
    if exe is None:
        pytest.fail("the browser tests need Debian's chromium; `bash .ci/setup` installs it (apt-get install chromium)")
    return {**browser_type_launch_args, 'executable_path': exe, 'args': ARGS}

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def wait_http(url:str, timeout:float=90., proc=None, log=None)->float:
    "Seconds until `url` answers 200 (a server process that exits first fails at once, with its log)."
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"panel serve exited with {proc.returncode}:\n" + (Path(log).read_text()[-3000:] if log else ''))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200: return time.perf_counter() - t0
        except OSError: time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")

class Served:
    "`panel serve` of the dashboard notebook in a subprocess, on a store given by URL."
    def __init__(self, db_url:str, refresh_s:float=5.0, watch:str=''):
        self.port = free_port()
        env = {**os.environ, 'QUANTSAGE_DB_URL': db_url, 'QUANTSAGE_DASHBOARD_REFRESH_S': str(refresh_s), 'QUANTSAGE_DASHBOARD_WATCH': watch}
        (ROOT/'reports').mkdir(exist_ok=True)
        self.log = open(ROOT/'reports'/f'ui-panel-{self.port}.log', 'w')
        self.proc = subprocess.Popen([sys.executable, '-m', 'panel', 'serve', str(ROOT/'nbs'/'apps'/'dashboard.ipynb'), '--address', '127.0.0.1',
                                      '--port', str(self.port), '--allow-websocket-origin', f'127.0.0.1:{self.port}',
                                      '--setup', str(ROOT/'quantsage'/'apps'/'warmup.py')],          # as `quantsage dashboard` does
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/dashboard"
        try: self.startup_s = wait_http(self.url, proc=self.proc, log=self.log.name)
        except BaseException:
            self.stop(); raise                              # never leave a server behind
    def stop(self):
        self.proc.terminate()
        try: self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        self.log.close()

@pytest.fixture(scope='module')
def serve():
    started = []
    def start(db_url, **kw):
        s = Served(db_url, **kw); started.append(s); return s
    yield start
    for s in started: s.stop()

"""The dashboard as a user sees it: a real `panel serve` of the notebook, driven by a real headless Chromium, on a
store filled by real backtests, while another process writes to it."""
import subprocess, sys, textwrap
import pytest
pytest.importorskip('playwright')
from playwright.sync_api import expect

@pytest.fixture(scope='module')
def filled(tmp_path_factory):
    "A SQLite store with two real backtests (BTC/USDT hourly, the shared data), a paper session's rows and the bars."
    from quantsage.data.store import Store
    from quantsage.data.catalog import load_bars
    from quantsage.engine.backtest import backtest
    url = f"sqlite:///{tmp_path_factory.mktemp('ui')}/dash.sqlite"
    btc = load_bars('BTC/USDT', '1h', 'file', '2024-01-01', '2024-04-01')
    runs = [backtest(s, btc, symbols='BTC/USDT', risk=True, progress=False) for s in ('mean_reversion', 'momentum')]
    with Store(url) as st:
        for r in runs: r.save(st)
        st.write_bars(btc, 'BTC/USDT', '1h', 'binance', 'crypto')
    return url, [r.run_id for r in runs]

WRITER = textwrap.dedent('''
    import sys, pandas as pd
    from quantsage.data.store import Store
    from quantsage.events import FillEvent, PerformanceMetricEvent, Side
    url, run, fill, price, equity = sys.argv[1:6]
    ts = int(pd.Timestamp.now(tz='UTC').value)                 # a session writes as it goes: stamped now
    with Store(url) as st:
        st.write_events([FillEvent('ord-' + fill, fill, 'BTC/USDT', Side.BUY, 0.01, float(price), 0.05, ts, ts),
                         PerformanceMetricEvent({'equity': float(equity)}, ts, ts, scope='paper', run_id=run)], run_id=run)
''')

def write_from_another_process(url, run, fill, price, equity):
    subprocess.run([sys.executable, '-c', WRITER, url, run, fill, str(price), str(equity)], check=True, timeout=60)

def test_the_page_renders_the_equity_plot_and_tables_from_the_store(serve, filled, page):
    url, (mr, mom) = filled
    app = serve(url, watch='BTC/USDT')
    page.goto(app.url)
    expect(page.locator('canvas').first).to_be_attached(timeout=30_000)          # the Bokeh equity plot
    expect(page.get_by_text(f"{mom} · as of").first).to_be_visible(timeout=30_000)     # the newest run, from the store
    expect(page.get_by_text('Cash').first).to_be_visible()
    expect(page.locator('.tabulator-row').first).to_be_attached()                 # the open position / price tables
    page.get_by_text('Trades & orders').click()
    expect(page.locator('.tabulator-row').first).to_be_visible(timeout=10_000)
    page.get_by_text('Risk', exact=True).click()
    expect(page.get_by_text('Layer utilisation')).to_be_visible()
    page.screenshot(path=str(app.log.name).replace('.log', '.png'), full_page=True)

def test_a_fill_written_by_another_process_appears_within_two_refresh_periods(serve, filled, page):
    url, _ = filled
    write_from_another_process(url, 'paper-ui', 'fill-first', 42000.5, 100_000)   # the session, before the page
    refresh = 1.5
    app = serve(url, refresh_s=refresh)
    page.goto(app.url)
    expect(page.get_by_text('paper-ui · as of').first).to_be_visible(timeout=30_000)     # the newest run is shown
    page.get_by_text('Trades & orders').click()
    expect(page.get_by_text('ord-fill-first')).to_be_visible(timeout=10_000)
    write_from_another_process(url, 'paper-ui', 'fill-second', 42111.25, 100_050)
    expect(page.get_by_text('ord-fill-second')).to_be_visible(timeout=int(2*refresh*1000) + 500)

def test_the_explorer_compares_two_backtests(serve, filled, page):
    url, (mr, mom) = filled
    app = serve(url)
    page.goto(app.url)
    expect(page.locator('canvas').first).to_be_attached(timeout=30_000)
    page.get_by_text('Backtest explorer').click()
    choice = page.locator('.choices input').first
    for rid in (mr, mom):
        choice.click(); choice.fill(rid[:10])
        page.locator('.choices__list--dropdown .choices__item--selectable', has_text=rid).first.click()
    table = page.locator('table.qs-compare')
    expect(table).to_be_visible(timeout=10_000)
    expect(table).to_contain_text(mr); expect(table).to_contain_text(mom); expect(table).to_contain_text('sharpe')

def test_a_public_bind_asks_for_the_password_and_lets_the_right_one_in(filled, page, tmp_path):
    "`quantsage dashboard --address 0.0.0.0` with QUANTSAGE_DASHBOARD_PASSWORD: Panel's login page, then the dashboard."
    import os, signal
    from pathlib import Path
    from conftest import free_port, wait_http
    url, (mr, mom) = filled
    port = free_port()
    exe = str(Path(sys.executable).parent/'quantsage')
    log = open(tmp_path/'serve.log', 'w')
    proc = subprocess.Popen([exe, 'dashboard', '--address', '0.0.0.0', '--port', str(port), '--origin', f'127.0.0.1:{port}', '--db-url', url],
                            env={**os.environ, 'QUANTSAGE_DASHBOARD_PASSWORD': 'correct-horse'}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/login", proc=proc, log=log.name)
        creds = list(Path('/tmp').glob('quantsage-dashboard-*.json'))
        page.goto(f"http://127.0.0.1:{port}/dashboard")
        page.locator('input[name=username]').fill('quantsage'); page.locator('input[name=password]').fill('wrong')
        page.locator('button, input[type=submit]').first.click()
        expect(page.locator('input[name=password]')).to_be_visible()                  # still the login page
        page.goto(f"http://127.0.0.1:{port}/dashboard")
        page.locator('input[name=username]').fill('quantsage'); page.locator('input[name=password]').fill('correct-horse')
        page.locator('button, input[type=submit]').first.click()
        expect(page.get_by_text(' · as of').first).to_be_visible(timeout=30_000)        # the dashboard itself, past the login
        expect(page.get_by_role('combobox', name='Run')).to_contain_text(mom)
        assert creds                                                                  # the credentials file exists while serving ...
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(timeout=30); log.close()       # as a service manager stops it
        try: os.killpg(proc.pid, signal.SIGKILL)                                 # nothing of it may outlive the test
        except ProcessLookupError: pass
    assert proc.returncode == 130
    assert not [p for p in creds if p.exists()]                                      # ... and is removed when it stops

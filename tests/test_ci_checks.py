"""The CI checks themselves can fail: each is run on a copy of the project with a planted defect."""
import json, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

@pytest.fixture
def copy(tmp_path):
    for d in ('nbs', 'quantsage', '.ci'): shutil.copytree(ROOT/d, tmp_path/d, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
    for f in ('settings.ini', 'README.md'): shutil.copy(ROOT/f, tmp_path/f)
    return tmp_path

def run(copy, *args):
    bindir = str(Path(sys.executable).parent)
    return subprocess.run([sys.executable, *args], cwd=copy, capture_output=True, text=True, timeout=300,
                          env={'PATH': bindir + ':/usr/bin:/bin', 'HOME': str(copy)})

def test_all_checks_pass_on_the_real_project(copy):
    for args in (['.ci/check_layers.py'], ['.ci/readme.py', '--check'], ['.ci/check_sync.py', 'clean'], ['.ci/check_sync.py', 'export']):
        r = run(copy, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)

def test_layer_check_catches_an_upward_import(copy):
    core = copy/'quantsage'/'events.py'
    core.write_text(core.read_text() + "\ndef _later():\n    from quantsage.data.store import Store\n")
    r = run(copy, '.ci/check_layers.py')
    assert r.returncode == 1
    assert '01_events.ipynb (layer 1) imports quantsage.data.store from 12_data.store.ipynb (layer 12)' in r.stderr

def test_layer_check_sees_relative_imports(copy):
    p = copy/'quantsage'/'data'/'bars.py'
    p.write_text(p.read_text() + "\nfrom . import samples\n")
    r = run(copy, '.ci/check_layers.py')
    assert r.returncode == 1 and 'imports quantsage.data.samples' in r.stderr

def test_readme_check_catches_drift(copy):
    (copy/'README.md').write_text((copy/'README.md').read_text() + "\nedited by hand\n")
    r = run(copy, '.ci/readme.py', '--check')
    assert r.returncode == 1 and 'README.md is out of date' in r.stderr

def test_clean_check_catches_a_notebook_with_execution_counts(copy):
    p = copy/'nbs'/'00_core.ipynb'
    nb = json.loads(p.read_text())
    code = next(c for c in nb['cells'] if c['cell_type'] == 'code')
    code['execution_count'] = 7
    p.write_text(json.dumps(nb))
    r = run(copy, '.ci/check_sync.py', 'clean')
    assert r.returncode == 1 and 'notebooks were not clean' in r.stderr and 'nbs/00_core.ipynb' in r.stderr

def test_export_check_catches_a_hand_edited_module(copy):
    p = copy/'quantsage'/'core.py'
    p.write_text(p.read_text().replace('def utc_now()', 'def utc_now_edited_by_hand()'))
    r = run(copy, '.ci/check_sync.py', 'export')
    assert r.returncode == 1 and 'out of sync with the notebooks' in r.stderr and 'quantsage/core.py' in r.stderr

"""CI check: `clean` fails if nbdev_clean would change a notebook; `export` fails if nbdev_export would
change the package. Both run the real nbdev command and compare file hashes before and after, so the
check does not depend on git; a failure leaves the cleaned/exported files in place for review."""
import hashlib, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def snapshot(folder, pattern):
    return {p.relative_to(ROOT): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ROOT/folder).rglob(pattern))
            if '.ipynb_checkpoints' not in p.parts and '__pycache__' not in p.parts}

def check(kind):
    folder, pattern, cmd = {'clean': ('nbs', '*.ipynb', ['nbdev_clean']), 'export': ('quantsage', '*.py', ['nbdev_export'])}[kind]
    before = snapshot(folder, pattern)
    subprocess.run(cmd, cwd=ROOT, check=True)
    after = snapshot(folder, pattern)
    changed = sorted(str(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        what = 'notebooks were not clean' if kind == 'clean' else 'the package was out of sync with the notebooks'
        sys.exit(f"FAIL: {what}; {' '.join(cmd)} changed: {', '.join(changed)}\n"
                 f"(edit the notebooks, never quantsage/; run nbdev_clean and nbdev_export, then commit both)")
    print(f"ok: {' '.join(cmd)} changed nothing ({len(after)} files)")

if __name__ == '__main__':
    check(sys.argv[1])

"""README.md is generated from nbs/index.ipynb (nbdev_readme needs Quarto, which cannot be installed here).
Markdown cells are copied; code cells become ```python blocks (outputs are not copied: the README shows
what to type). `--check` fails if README.md differs from what the notebook gives.
Usage: python .ci/readme.py [--check]"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "<!-- generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file -->\n\n"

def render():
    cells = json.loads((ROOT/'nbs'/'index.ipynb').read_text())['cells']
    parts = []
    for c in cells:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    return HEADER + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != text:
            sys.exit("FAIL: README.md is out of date with nbs/index.ipynb; run: python .ci/readme.py")
        print("ok: README.md matches nbs/index.ipynb")
    else:
        readme.write_text(text); print(f"wrote {readme}")

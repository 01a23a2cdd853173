"""CI check: a module may import only from modules of its own or a lower-numbered notebook.

The number of the notebook that exports a module is its layer (`12_data.store.ipynb` -> quantsage.data.store
is 12). The check parses the exported package with `ast` (so it sees every import, including relative
ones and imports inside functions), and user-facing notebooks (apps, runbooks, tutorials) may import anything.
Usage: python .ci/check_layers.py [ROOT]   (exit 1 and a list of violations when a layer reaches upward)"""
import ast, json, re, sys
from pathlib import Path

def layers(root):
    "module name -> (layer number, notebook name) from the `#| default_exp` of each numbered notebook."
    out = {}
    for nb in sorted((root/'nbs').glob('[0-9]*.ipynb')):
        cells = json.loads(nb.read_text())['cells']
        for c in cells:
            m = re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c['source']), re.M)
            if m: out['quantsage.' + m.group(1)] = (int(re.match(r'\d+', nb.stem).group()), nb.name); break
    return out

def imported_modules(path, module):
    "Absolute quantsage module names imported by the file of `module`."
    tree, pkg = ast.parse(path.read_text()), module.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith('quantsage')}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split('.')[:len(pkg.split('.')) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else: name = node.module or ''
            if name.startswith('quantsage'):
                found.add(name)
                found |= {f"{name}.{a.name}" for a in node.names}     # `from quantsage.data import schema`
    return found

def check(root):
    lay, bad = layers(root), []
    for mod, (n, nb) in sorted(lay.items()):
        path = root/(mod.replace('.', '/') + '.py')
        if not path.exists(): bad.append(f"{nb}: exported module {path.relative_to(root)} is missing"); continue
        for dep in sorted(imported_modules(path, mod)):
            if dep in lay and lay[dep][0] > n:
                bad.append(f"{nb} (layer {n}) imports {dep} from {lay[dep][1]} (layer {lay[dep][0]})")
    return lay, bad

if __name__ == '__main__':
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    lay, bad = check(root)
    if bad: sys.exit("FAIL: a lower layer imports a higher one:\n  " + "\n  ".join(bad))
    print(f"ok: {len(lay)} modules, every import looks down or sideways")

"""The package's import structure: no import cycle between modules, and every import points down the
floors declared in open_lth_concave/floors.py. Both are read from the source with `ast`: every
`import` and `from ... import` statement, at the top of a module and inside functions (a lazy import is
still an arrow), and every string that names a module of the package (imported by name, e.g. through
`importlib.import_module`).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

from open_lth_concave.floors import floor_of

PACKAGE = Path(__file__).resolve().parent.parent / "open_lth_concave"
NAME = PACKAGE.name

# Edges from a floor to a higher one that are known and being removed: (importer, imported). Empty since
# issue #14 (report -> cli and cli -> illustrate/upstream are gone); nothing may be added here.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> set[tuple[str, int]]:
    """(imported module of this package, line) for every import statement anywhere in the file, and every
    string (not a docstring) that is the full name of one of the package's modules."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[tuple[str, int]] = set()
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and node.value in known and node.value != NAME:
            out.add((node.value, node.lineno))
        elif isinstance(node, ast.Import):
            out |= {(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == NAME}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != NAME:
                continue
            for alias in node.names:   # `from pkg import submodule` imports the submodule
                sub = f"{source}.{alias.name}"
                out.add((sub if sub in known else source, node.lineno))
    return out


def graph() -> dict[str, set[tuple[str, int]]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def part(module: str) -> str:
    """The top-level part a module belongs to ("" for the package's __init__)."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a module importing itself), by Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_lazy_relative_and_submodule_imports(tmp_path):
    """The walker itself: an import inside a function, a relative import and `from pkg import submodule`."""
    known = {f"{NAME}.a": tmp_path / "a.py", f"{NAME}.b": tmp_path / "b.py", f"{NAME}.b.c": tmp_path / "c.py"}
    source = tmp_path / "a.py"
    source.write_text('"""open_lth_concave.b"""\nimport os\n\ndef f():\n    from open_lth_concave.b import c\n'
                      '    from .b import x\n    return importlib.import_module("open_lth_concave.b.c")\n')
    assert imports(f"{NAME}.a", source, known) == {(f"{NAME}.b.c", 5), (f"{NAME}.b", 6), (f"{NAME}.b.c", 7)}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_part_stands_on_a_floor():
    unplaced = sorted({part(m) for m in modules()} - {p for p in {part(m) for m in modules()} if _placed(p)})
    assert not unplaced, f"parts on no floor (add them to open_lth_concave/floors.py): {unplaced}"


def _placed(name: str) -> bool:
    try:
        floor_of(name)
    except KeyError:
        return False
    return True


def test_no_import_cycle():
    edges = {m: {t for t, _ in out if t != m} for m, out in graph().items()}
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_imports_point_down_the_floors():
    upward = []
    for module, out in sorted(graph().items()):
        for target, line in sorted(out):
            if floor_of(part(target)) > floor_of(part(module)):
                upward.append((module, target, line))
    unexpected = [f"{m}:{line} imports {t} (floor {floor_of(part(m))} -> {floor_of(part(t))})"
                  for m, t, line in upward if (m, t) not in KNOWN_UPWARD]
    assert not unexpected, "imports from a floor to a higher one:\n" + "\n".join(unexpected)


# ---- the output layout: one module owns every name -------------------------------------------------------
LAYOUT = f"{NAME}.foundations.layout"


def _strings(path: Path) -> list[tuple[str, int, ast.AST]]:
    """Every string constant of a file except docstrings (f-string pieces included), with its line and node."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.value, n.lineno, n) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def layout_file_names() -> list[str]:
    """The layout's file names (those with a suffix, and .lock) and the plug-ins' declared ones."""
    import open_lth_concave.concave  # noqa: F401  (declares the bundled plug-in's files)
    from open_lth_concave.foundations import layout
    names = [v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and "." in v and "*" not in v]
    names += [v for v in layout.FIGURES] + [name for name, _ in layout._DECLARED.values()]
    return sorted(set(names))


def test_the_layout_lists_the_files_results_hold():
    names = layout_file_names()
    for expected in ("mask.pth", "checkpoint.pth", "hparams.json", "hparams.log", "timing.json", "platform.json",
                     "sparsity_report.json", "pruning.json", "report.json", "branch.json", "stacked.json", ".lock",
                     "strategy_final.pth", "relaxed_mask.pth", "search_metrics.json"):
        assert expected in names


def test_each_file_name_of_the_layout_is_spelled_in_one_module():
    """`grep -rn '"mask.pth"' open_lth_concave` finds one definition: each file name of the results (and the
    prefixes of the numbered folders and model files) is written in one module only; everything else asks
    foundations/layout.py (a plug-in declares its own files there, spelled in the plug-in)."""
    import re
    names = layout_file_names()
    where: dict[str, set[str]] = {n: set() for n in names}
    for module, path in modules().items():
        for text, _, _ in _strings(path):
            for name in names:
                if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text):
                    where[name].add(module)
    wrong = {n: sorted(m) for n, m in where.items() if len(m) != 1}
    assert not wrong, f"file names spelled in more or fewer than one module: {wrong}"


FOLDER_WORDS = ("main", "logger", "pruning", "search", "tensorboard")
PREFIXES = ("replicate_", "level_", "model_", "lottery_branch_", "compare_", "stacked_checkpoint_")


def test_paths_are_built_by_the_layout_only():
    """Outside the layout, no path is joined with a literal folder or file word (`x / "main"`, a glob of
    `"logger"`), and no f-string numbers a folder or a model file (`f"level_{L}"`, `f"replicate_{N}"`)."""
    found = []
    for module, path in modules().items():
        if module == LAYOUT:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                    and node.right.value in FOLDER_WORDS:
                found.append(f"{module}:{node.lineno} / {node.right.value!r}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("glob", "rglob") and node.args and isinstance(node.args[0], ast.Constant) \
                    and any(w in str(node.args[0].value) for w in FOLDER_WORDS + PREFIXES):
                found.append(f"{module}:{node.lineno} {node.func.attr}({node.args[0].value!r})")
            elif isinstance(node, ast.JoinedStr):
                parts = node.values
                for a, b in zip(parts, parts[1:]):
                    if isinstance(a, ast.Constant) and isinstance(b, ast.FormattedValue) and \
                            re.search(rf"(?<!\w)(?:{'|'.join(PREFIXES)})$", str(a.value)):
                        found.append(f"{module}:{node.lineno} f-string {a.value!r}{{...}}")
    assert not found, "paths built outside foundations/layout.py:\n" + "\n".join(sorted(found))

"""`open_lth upstream run PATH -- ARGS`: run a checkout's own open_lth.py with the edits applied in memory.

A finder placed first on sys.meta_path serves each module of the checkout that an edit touches from its
edited text (compiled under the file's real name, never written back, no bytecode cached); every other
module is imported from the checkout as it is. A file that already carries the edits (a patched checkout)
is used as it is; one that differs is refused before anything runs. This package's strategies are
registered through $OPEN_LTH_PLUGINS, so no install step is needed for this mode.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import runpy
import sys
from pathlib import Path

from open_lth_concave.upstream import edits as E

PLUGIN = "open_lth_concave.upstream.plugin:register"


class _EditedSource(importlib.abc.Loader):
    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        exec(compile(self.text, str(self.path), "exec", dont_inherit=True), module.__dict__)

    def get_source(self, fullname: str) -> str:
        return self.text


class EditedCheckoutFinder(importlib.abc.MetaPathFinder):
    """Serves the edited modules of one checkout (module name -> edited text)."""

    def __init__(self, root: Path, texts: dict[str, str]):
        self.root = root
        self.modules = {f[:-3].replace("/", "."): (root / f, t) for f, t in texts.items() if f.endswith(".py")}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.modules:
            return None
        file, text = self.modules[fullname]
        return importlib.util.spec_from_file_location(fullname, file, loader=_EditedSource(file, text))


def edited_texts(root: Path) -> dict[str, str]:
    """{file: its text with every edit applied} (refuses, with one line, a file that differs)."""
    return {f: new for f, (_, new) in E.patched_texts(root, E.load()).items()}


def run_in_memory(root: Path, args: list[str]) -> int:
    root = Path(root).resolve()
    finder = EditedCheckoutFinder(root, edited_texts(root))
    clash = sorted(m for m in sys.modules if m.split(".")[0] in {n.split(".")[0] for n in finder.modules})
    if clash:
        raise E.EditError(f"modules {', '.join(clash[:3])} are already imported from elsewhere; run "
                          "`open_lth upstream run` in a fresh process")
    plugins = [p for p in os.environ.get("OPEN_LTH_PLUGINS", "").split(",") if p.strip()]
    if PLUGIN not in plugins:
        os.environ["OPEN_LTH_PLUGINS"] = ",".join(plugins + [PLUGIN])
    old_argv, old_path, old_bytecode = sys.argv, list(sys.path), sys.dont_write_bytecode
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, str(root))
    sys.argv = [str(root / "open_lth.py"), *args]
    sys.dont_write_bytecode = True     # this mode leaves the checkout as it was
    try:
        runpy.run_path(str(root / "open_lth.py"), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.meta_path.remove(finder)
        sys.argv, sys.path[:], sys.dont_write_bytecode = old_argv, old_path, old_bytecode
    return 0

"""Tests run on any machine: no test names an absolute path of a particular machine (data next to the
repository is found through conftest's repository-relative `../shared`)."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

HOME_PREFIXES = tuple("/" + name + "/" for name in ("home", "Users", "root"))   # built, not spelled out


def machine_paths(source: str) -> list[str]:
    """String literals that are absolute paths into this checkout, the `shared` folder beside it, or a
    home folder. (Not everything under the checkout's parent: a clone may sit in /tmp, where tests
    legitimately name other /tmp paths.)"""
    here = {str(q).rstrip("/") + "/" for p in (REPO, REPO.parent / "shared") for q in (p.absolute(), p.resolve())}
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if text.startswith(HOME_PREFIXES) or any(text.startswith(p) or text == p[:-1] for p in here):
                found.append(text)
    return found


def test_no_test_names_a_machine_specific_path():
    offenders = {path.name: machine_paths(path.read_text()) for path in sorted((REPO / "tests").glob("*.py"))
                 if path.name != Path(__file__).name}   # this file holds examples of what is refused
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_catches_an_absolute_workspace_path():
    workspace = str(REPO.parent.resolve())
    assert machine_paths(f"DATA = Path({workspace + '/shared/data/mnist10k'!r})") == [workspace + "/shared/data/mnist10k"]
    home = "/" + "home/someone/data"
    assert machine_paths(f"DATA = Path({home!r})") == [home]
    assert machine_paths("DATA = REPO.parent / 'shared' / 'data'") == []
    assert machine_paths(f"OTHER = {str(REPO.parent.resolve()) + '/elsewhere/x'!r}") == []   # e.g. a clone in /tmp

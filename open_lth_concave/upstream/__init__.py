"""`open_lth upstream`: the concave strategies inside an existing open_lth checkout (facebookresearch/open_lth
or a fork of it), two ways.

    open_lth upstream patch PATH [--check | --revert] [--only compat|hooks]
        applies the edits in patches/open_lth/ to the checkout's files (idempotent; all or nothing; a file
        that does not look as expected is refused with one line naming it); --check reports, --revert undoes.
    open_lth upstream run PATH -- <upstream arguments>
        runs the checkout's own open_lth.py with the same edits applied in memory: no file changes.

Either way upstream's `lottery` then knows every mask-search strategy of this package (`concave_<regularizer>`,
`sigmoid_mask`) through the plug-in hook the edits add (entry-point group `open_lth.plugins`, which this
package declares; see plugin.py). Where things are: edits.py reads and applies the edits, memory.py is the
in-memory mode, plugin.py is the code that runs inside upstream.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from open_lth_concave.upstream import edits as E

# what `open_lth --help` lists for this subcommand (read from this file, without importing it)
HELP = "The concave strategies inside an open_lth checkout: patch it, or run it patched in memory."
USAGE = ("open_lth upstream patch PATH [--check | --revert] [--only compat|hooks]\n"
         "       open_lth upstream run PATH -- <upstream open_lth arguments>")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise E.EditError(f"{message} (usage: {USAGE})")


def _patch(argv: list[str]) -> int:
    p = _Parser(prog="open_lth upstream patch", description="Apply, check or revert the edits of patches/open_lth/ "
                "in an open_lth checkout (all or nothing; a file that differs is refused and nothing changes).")
    p.add_argument("path", help="The open_lth checkout (the folder holding open_lth.py).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="Only report whether each edit is applied (exit 0 when all are).")
    mode.add_argument("--revert", action="store_true", help="Undo the applied edits (the files come back byte for byte).")
    p.add_argument("--only", choices=list(E.GROUPS), default=None,
                   help="Only this group: compat (what upstream needs to run on current PyTorch/NumPy) or hooks "
                        "(the plug-in and training hooks). Default: both.")
    args = p.parse_args(argv)
    root = E.check_checkout(Path(args.path))
    edits = E.load((args.only,) if args.only else E.GROUPS)
    if args.check:
        result = E.states(root, edits)
        for e, state in result:
            print(f"{state:8s} {e.group:6s} {e.file}: {e.why.split(';')[0]}")
        applied = sum(s == "applied" for _, s in result)
        differs = [e for e, s in result if s == "differs"]
        if differs:
            print(f"{root}: {len(differs)} edit(s) cannot be applied: "
                  f"{differs[0].refusal(root, E.read_text(root, differs[0].file))}")
            return 2
        if applied == len(result):
            print(f"{root}: applied ({applied} of {len(result)} edits)")
            return 0
        print(f"{root}: {'not applied' if applied == 0 else 'partly applied'} ({applied} of {len(result)} edits)")
        return 1
    if args.revert:
        changed = E.write(root, E.reverted_texts(root, edits))
        print(f"{root}: reverted ({len(changed)} file(s) restored: {', '.join(changed) or 'none needed'})")
        return 0
    changed = E.write(root, E.patched_texts(root, edits))
    print(f"{root}: applied {len(edits)} edits ({len(changed)} file(s) changed: {', '.join(changed) or 'none, already applied'})")
    return 0


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {USAGE}\nRuns PATH/open_lth.py with the edits of patches/open_lth/ applied in memory "
              "(no file of the checkout changes) and this package's strategies registered.")
        return 0
    root = E.check_checkout(Path(argv[0]))
    rest = argv[1:]
    if rest and rest[0] == "--":
        rest = rest[1:]
    from open_lth_concave.upstream.memory import run_in_memory
    return run_in_memory(root, rest)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {USAGE}\n\n{__doc__.strip()}")
        return 0
    commands = {"patch": _patch, "run": _run}
    if argv[0] not in commands:
        raise E.EditError(f"unknown upstream command {argv[0]!r}; valid: {', '.join(commands)}")
    return commands[argv[0]](argv[1:])

"""The edits in `patches/open_lth/*.edits`: reading them, checking a checkout, applying and reverting.

An edit names one file of an upstream open_lth checkout, the exact text it expects there (exactly one
occurrence) and the text that replaces it. Its state in a file is `applied` (the replacement occurs
once), `pristine` (no replacement, the expected text occurs once) or `differs` (anything else: a fork
that changed those lines, or a file that is missing). A patch is applied all or nothing: every edit is
checked first, and one that differs stops everything before any file is written. Reverting replaces
each applied replacement by its expected text, so the file comes back byte for byte.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import io
from open_lth_concave.foundations.errors import UserError

GROUPS = ("compat", "hooks")     # patches/open_lth/<group>.edits, applied in this order
CHECKOUT_MARKERS = ("open_lth.py", "pruning/registry.py", "lottery/runner.py", "training/train.py")


class EditError(UserError, ValueError):
    """A checkout or an edits file that is not as expected; the message names the file."""


@dataclass(frozen=True)
class Edit:
    group: str
    file: str          # path inside the checkout, '/'-separated
    why: str
    expected: str
    replacement: str

    def state(self, text: str) -> str:
        if text.count(self.replacement) == 1 and (self.expected in self.replacement or self.expected not in text):
            return "applied"
        if self.replacement not in text and text.count(self.expected) == 1:
            return "pristine"
        return "differs"

    def refusal(self, root: Path, text: Optional[str]) -> str:
        first = self.expected.strip("\n").splitlines()[0].strip()
        shown = first if len(first) <= 90 else first[:87] + "..."
        if text is None:
            return f"{root / self.file} is missing: not an open_lth checkout this patch was written for; nothing was changed"
        found = text.count(self.expected)
        return (f"{root / self.file} does not look as expected (a fork that changed it?): expected exactly one "
                f"`{shown}` ({found} found) or this patch's replacement; nothing was changed")


def patches_dir() -> Path:
    """`patches/` at the top of the source tree this package was installed from (editable install)."""
    here = Path(__file__).resolve().parents[2] / "patches" / "open_lth"
    if not here.is_dir():
        raise EditError(f"the patches folder {here} is missing: install open_lth_concave from its source tree "
                        "(pip install -e .) so that patches/ is next to the package")
    return here


def parse(text: str, group: str, source: str = "<edits>") -> list[Edit]:
    """Blocks `@@ edit <file>` / `why: ...` / `--- expected` / lines / `+++ replacement` / lines / `@@ end`;
    `--- expected inline` matches part of a line (the texts have no line break at their end)."""
    edits: list[Edit] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("@@ edit "):
            if line.strip() and not line.startswith("#"):
                raise EditError(f"{source}:{i + 1}: expected `@@ edit <file>`, a comment or a blank line")
            i += 1
            continue
        file = line[len("@@ edit "):].strip()
        start = i + 1
        try:
            why_at = start
            why = lines[why_at][len("why:"):].strip() if lines[why_at].startswith("why:") else ""
            exp_at = next(k for k in range(start, len(lines)) if lines[k].rstrip("\n") in ("--- expected", "--- expected inline"))
            rep_at = next(k for k in range(exp_at, len(lines)) if lines[k].rstrip("\n") == "+++ replacement")
            end_at = next(k for k in range(rep_at, len(lines)) if lines[k].rstrip("\n") == "@@ end")
        except StopIteration:
            raise EditError(f"{source}:{i + 1}: edit of {file} is not closed (--- expected, +++ replacement, @@ end)") from None
        expected, replacement = "".join(lines[exp_at + 1:rep_at]), "".join(lines[rep_at + 1:end_at])
        if lines[exp_at].rstrip("\n").endswith(" inline"):   # part of a line: no line break at the end
            expected, replacement = expected.removesuffix("\n"), replacement.removesuffix("\n")
        if not expected.strip() or expected == replacement:
            raise EditError(f"{source}:{i + 1}: edit of {file} has an empty or unchanged text")
        edits.append(Edit(group, file, why, expected, replacement))
        i = end_at + 1
    return edits


def load(groups: tuple[str, ...] = GROUPS, folder: Optional[Path] = None) -> list[Edit]:
    folder = folder or patches_dir()
    out: list[Edit] = []
    for group in groups:
        path = Path(folder) / f"{group}.edits"
        out += parse(path.read_text(encoding="utf-8"), group, str(path))
    return out


def check_checkout(root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise EditError(f"invalid checkout {root}: not a folder")
    missing = [m for m in CHECKOUT_MARKERS if not (root / m).is_file()]
    if missing:
        raise EditError(f"invalid checkout {root}: not an open_lth checkout (no {', '.join(missing)})")
    return root


def read_text(root: Path, file: str) -> Optional[str]:
    path = root / file
    if not path.is_file():
        return None
    with open(path, "r", encoding="utf-8", newline="") as fp:   # newline="": keep \r\n as they are
        return fp.read()


def states(root: Path, edits: list[Edit]) -> list[tuple[Edit, str]]:
    """Each edit's state, edits of one file taken in order on the text as the earlier ones leave it."""
    texts: dict[str, Optional[str]] = {}
    out = []
    for e in edits:
        if e.file not in texts:
            texts[e.file] = read_text(root, e.file)
        text = texts[e.file]
        state = "differs" if text is None else e.state(text)
        out.append((e, state))
    return out


def _edited_texts(root: Path, edits: list[Edit], undo: bool) -> dict[str, tuple[str, str]]:
    """{file: (text now, text with every edit applied, or with every applied edit undone)}; an edit that
    differs raises with one line."""
    texts: dict[str, list[str]] = {}
    for e in (reversed(edits) if undo else edits):
        if e.file not in texts:
            original = read_text(root, e.file)
            if original is None:
                raise EditError(e.refusal(root, None))
            texts[e.file] = [original, original]
        text = texts[e.file][1]
        state = e.state(text)
        if state == "differs":
            raise EditError(e.refusal(root, text))
        if undo and state == "applied":
            texts[e.file][1] = text.replace(e.replacement, e.expected, 1)
        elif not undo and state == "pristine":
            texts[e.file][1] = text.replace(e.expected, e.replacement, 1)
    return {f: (t[0], t[1]) for f, t in texts.items()}


def patched_texts(root: Path, edits: list[Edit]) -> dict[str, tuple[str, str]]:
    """{file: (text now, text with every edit applied)}; an edit that differs raises with one line."""
    return _edited_texts(root, edits, undo=False)


def reverted_texts(root: Path, edits: list[Edit]) -> dict[str, tuple[str, str]]:
    """{file: (text now, text with every applied edit undone)}; an edit that differs raises."""
    return _edited_texts(root, edits, undo=True)


def write(root: Path, new_texts: dict[str, tuple[str, str]]) -> list[str]:
    """Write the files whose text changes (foundations/io.atomic_writer: whole or not at all; mode kept)."""
    changed = [f for f, (old, new) in new_texts.items() if old != new]
    for f in changed:
        path = root / f
        mode = path.stat().st_mode & 0o7777
        with io.atomic_writer(path) as fp:
            fp.write(new_texts[f][1].encode("utf-8"))
        os.chmod(path, mode)
    return changed

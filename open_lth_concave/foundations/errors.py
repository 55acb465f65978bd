"""The one base class of user errors: bad input or a state of the files the user can fix.

Every error the user can act on derives from `UserError` (a bad flag, an unknown name, a missing or
damaged file, an unsafe archive, an experiment another process holds, hyperparameters that differ
from an experiment's record). Its message is one line that says what is wrong and what is allowed or
what to do; the command line prints it without a traceback and exits with `exit_code` (2). Errors
that are not the user's (a bug, a diverged training run) are not UserErrors.

The ground floor's own user errors live here too (a bad hyperparameter value, a bad step), so that
the modules of `foundations/` that raise them need only this one.
"""
from __future__ import annotations

import difflib
from typing import Optional


class UserError(Exception):
    """Reported as `open_lth <command>: error: <message>` on one line, exit code 2, no traceback."""

    exit_code: int = 2


class MissingFileError(UserError, FileNotFoundError):
    """A result file a step needs is absent (e.g. a level's trained ticket or mask); says which and why."""


class HparamError(UserError, ValueError):
    """A hyperparameter value that is not allowed; the message names the value and what is allowed."""


class StepError(UserError, ValueError):
    """A training position that cannot exist (negative, or steps of different epoch lengths combined)."""


def closest_name(name: str, valid: list[str]) -> Optional[str]:
    """The valid name a user most likely meant: the one its initials spell (learning_rate -> lr), else a
    close spelling, else one that contains it or that it contains; None when nothing is close."""
    initials = "".join(part[:1] for part in name.split("_") if part)
    if len(initials) > 1 and initials in valid:
        return initials
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if close:
        return close[0]
    inside = [v for v in valid if len(v) > 2 and (v in name or name in v)]
    if inside:
        return min(inside, key=lambda v: abs(len(v) - len(name)))
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.4)
    return close[0] if close else None


def did_you_mean(name: str, valid: list[str]) -> str:
    """' (did you mean X?)' for a valid name spelled close to `name`, or '' (one rule for every name looked up;
    stricter than `closest_name`: only a near spelling, never a guess)."""
    close = next(iter(difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)), None)
    return f" (did you mean {close}?)" if close and close != name else ""

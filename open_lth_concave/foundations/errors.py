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


class UserError(Exception):
    """Reported as `open_lth <command>: error: <message>` on one line, exit code 2, no traceback."""

    exit_code: int = 2


class MissingFileError(UserError, FileNotFoundError):
    """A result file a step needs is absent (e.g. a level's trained ticket or mask); says which and why."""


class HparamError(UserError, ValueError):
    """A hyperparameter value that is not allowed; the message names the value and what is allowed."""


class StepError(UserError, ValueError):
    """A training position that cannot exist (negative, or steps of different epoch lengths combined)."""

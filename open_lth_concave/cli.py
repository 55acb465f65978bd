"""`open_lth`: the command line. Each subcommand's flags are made into a job by jobs/ (`jobs.build`); this
module dispatches to the subcommand, runs its job, prints its results and turns errors into exit codes.

`open_lth --version`, `open_lth` / `open_lth --help` (the listing) and an unknown subcommand answer
before torch is imported: `jobs` (and through it torch) is imported by the subcommand that runs.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional

from open_lth_concave.foundations.commands import COMMANDS
from open_lth_concave.foundations.errors import UserError, did_you_mean

SUBCOMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {}


def subcommand(name: str, help_text: str):
    def decorator(fn: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
        SUBCOMMANDS[name] = (help_text, fn)
        return fn
    return decorator


def one_line(error: BaseException) -> str:
    """An error's message as one line (a message is written as one line; this guards the promise)."""
    return " ".join(str(error).split())


def loop_errors():
    """Errors found while running (not bad input): exit 1 for these, 143 for a stop by signal."""
    from open_lth_concave.pruning.strategy import PruningError
    from open_lth_concave.training.loop import Interrupted, TrainingDiverged
    return (TrainingDiverged, PruningError), Interrupted


def _print_output_dirs(job: "jobs.Job") -> None:   # --display_output_location
    for folder in job.output_dirs():
        print(folder)


def _print_tensorboard(job: "jobs.Job") -> None:
    for folder in job.write_tensorboard():
        print(f"TensorBoard events written to {folder}")


# ---- subcommands -------------------------------------------------------------------------------------
@subcommand("train", COMMANDS["train"])
def cmd_train(argv: list[str]) -> int:
    from open_lth_concave import jobs   # here, not at the top: the listing and --version need no torch
    job = jobs.build("train", argv)
    if job.display_output_location:
        _print_output_dirs(job)
        return 0
    results = job.run()
    if len(results) == 1:
        print(f"Final test accuracy {100 * next(iter(results.values()))['test_accuracy']:.2f}%")
    else:
        for replicate, metrics in results.items():
            print(f"Replicate {replicate}: final test accuracy {100 * metrics['test_accuracy']:.2f}%")
    if job.args.tensorboard:
        _print_tensorboard(job)
    return 0


@subcommand("lottery", COMMANDS["lottery"])
def cmd_lottery(argv: list[str]) -> int:
    from open_lth_concave import jobs   # see cmd_train
    job = jobs.build("lottery", argv)
    if job.display_output_location:
        _print_output_dirs(job)
        return 0
    job.run()
    if job.args.tensorboard:
        _print_tensorboard(job)
    return 0


@subcommand("lottery_branch", COMMANDS["lottery_branch"])
def cmd_lottery_branch(argv: list[str]) -> int:
    from open_lth_concave import jobs   # see cmd_train
    from open_lth_concave.branches import registry as branches
    if not argv or argv[0].startswith("-"):
        print("Branches (open_lth lottery_branch NAME --help):")
        for name in branches.list():
            print(f"    * {name}: {branches.get(name).description}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    job = jobs.build("lottery_branch", argv)
    if job.display_output_location:
        _print_output_dirs(job)
        return 0
    job.run()
    return 0


# ---- entry point -------------------------------------------------------------------------------------
LAZY_SUBCOMMANDS = {  # imported only when used, so a slow or broken extra never affects the others
    "compare": ("open_lth_concave.jobs.compare", COMMANDS["compare"]),
    "summary": ("open_lth_concave.jobs.summary", COMMANDS["summary"]),
}
# A plug-in adds a subcommand through this entry-point group: `NAME = "package.module:main"`, with
# `main(argv) -> exit code`; the module's `HELP = "..."` line is what `open_lth --help` lists, read from its
# source, so the module is imported only when its subcommand runs. The bundled `illustrate` and `upstream`
# are declared this way (pyproject.toml).
SUBCOMMANDS_GROUP = "open_lth_concave.subcommands"


def declared_help(module: str) -> str:
    """A subcommand module's `HELP = "..."` string, read without importing the module ("" without one)."""
    import ast
    import importlib.util
    from pathlib import Path
    try:
        source = Path(importlib.util.find_spec(module).origin).read_text()
        tree = ast.parse(source)
    except (ImportError, AttributeError, TypeError, ValueError, OSError, SyntaxError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets) \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node.value.value
    return ""


def _register_optional_subcommands() -> None:
    import importlib
    import importlib.util

    from open_lth_concave.foundations.registry import installed_entry_points
    for name, (module, help_text) in LAZY_SUBCOMMANDS.items():
        if name in SUBCOMMANDS:   # (no find_spec: it would import jobs/, and torch with it)
            continue

        def run(argv: list[str], module: str = module) -> int:
            return importlib.import_module(module).main(argv)
        SUBCOMMANDS[name] = (help_text, run)
    for ep in sorted(installed_entry_points(SUBCOMMANDS_GROUP), key=lambda e: (e.name, e.value)):
        if ep.name in SUBCOMMANDS:
            continue

        def run_entry_point(argv: list[str], ep=ep) -> int:
            try:
                main = ep.load()
            except ImportError as e:
                raise UserError(f"subcommand {ep.name!r} = {ep.value!r} (entry-point group {SUBCOMMANDS_GROUP}) "
                                f"failed to load: {type(e).__name__}: {e}") from e
            return main(argv)
        SUBCOMMANDS[ep.name] = (declared_help(ep.module), run_entry_point)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("--version", "-V"):
        from open_lth_concave import __version__
        print(f"open_lth_concave {__version__}")
        return 0
    _register_optional_subcommands()
    if argv and argv[0] in SUBCOMMANDS:   # a subcommand runs: the core and the plug-ins load (torch with them)
        from open_lth_concave.plugins import load_core, load_plugins
        load_core()
        try:
            load_plugins()
        except UserError as e:   # an installed plug-in that fails to load (foundations/registry.PluginError)
            print(f"open_lth: error: {one_line(e)}", file=sys.stderr)
            return e.exit_code
    if not argv or argv[0] not in SUBCOMMANDS:
        rule = "=" * 82
        print(f"{rule}\nopen_lth_concave: lottery tickets by iterative magnitude pruning and concave soft masks\n{'-' * 82}")
        for name, (text, _) in SUBCOMMANDS.items():
            print(f"    * open_lth {name}: {text}")
        print(rule)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"open_lth: error: unknown subcommand {argv[0]!r}{did_you_mean(argv[0], list(SUBCOMMANDS))}; "
                  f"valid: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
            return 2
        return 0
    try:
        return SUBCOMMANDS[argv[0]][1](argv[1:])
    except UserError as e:  # every user error derives from it (foundations/errors.py)
        print(f"open_lth {argv[0]}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except (loop_errors()[0]) as e:
        print(f"open_lth {argv[0]}: error: {e}", file=sys.stderr)
        return 1
    except loop_errors()[1] as e:
        print(f"open_lth {argv[0]}: {e}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"open_lth {argv[0]}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the file system refused (full disk, permissions, ...): the path and the cause
        if e.filename is None:
            raise
        print(f"open_lth {argv[0]}: error: {e.strerror or type(e).__name__}: {e.filename}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

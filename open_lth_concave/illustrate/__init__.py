"""`open_lth illustrate`: the paper's Section IV-C example (Figs. 3 and 4) plus the solvers behind it."""
from __future__ import annotations

import argparse
import sys

from open_lth_concave.foundations.paths import results_root
from open_lth_concave.illustrate.experiment import IllustrationError, run_illustration

# what `open_lth --help` lists for this subcommand (read from this file, without importing it)
HELP = "The paper's Section IV example: l1/log masks on logistic regression."
__all__ = ["run_illustration", "main", "add_cli", "IllustrationError"]


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Turns argparse's usage dump + exit into one line on stderr and return code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgError(message)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output_dir", default=str(results_root() / "illustrate"),
                        help="where illustrate.csv, the figures and summary.json go (default: $OPEN_LTH_ROOT/illustrate)")
    parser.add_argument("--draws", type=int, default=100, help="random train/validation draws to average over")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and of the initialisations")
    parser.add_argument("--data", choices=["auto", "mnist", "digits"], default="auto",
                        help="auto: MNIST (20x20 crop) if its files are under $OPEN_LTH_DATASETS/mnist, else sklearn digits")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")


def _run(args: argparse.Namespace) -> int:
    try:
        run_illustration(args.output_dir, draws=args.draws, seed=args.seed, data_source=args.data, quiet=args.quiet)
    except IllustrationError as e:
        print(f"open_lth illustrate: error: {e}", file=sys.stderr)
        return 2
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `illustrate` on a parent CLI; the parsed namespace's `func(args)` runs it and returns the exit code."""
    parser = subparsers.add_parser("illustrate", help="Section IV-C example: accuracy/sparsity vs lambda (Figs. 3, 4)")
    _add_arguments(parser)
    parser.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="open_lth illustrate", description=__doc__)
    _add_arguments(parser)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except _ArgError as e:
        print(f"open_lth illustrate: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    return _run(args)


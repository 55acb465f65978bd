"""`open_lth summary DIR [--figures OUT]`: the command line of report/summary.py."""
from __future__ import annotations

from pathlib import Path

from open_lth_concave.jobs.flags import OneLineParser


def main(argv: list[str]) -> int:
    from open_lth_concave.report import summary
    p = OneLineParser(prog="open_lth summary", description=summary.__doc__.splitlines()[0])
    p.add_argument("dir", help="A lottery_<hash> experiment folder or one of its replicate_<N> folders, a "
                               "train_<hash> folder, or a compare_<hash> folder.")
    p.add_argument("--figures", type=str, default=None, metavar="OUT",
                   help="Also draw the run's learning curves, mask histograms (concave searches) and remaining "
                        "weights per layer into the folder OUT (see report/figures.py).")
    args = p.parse_args(argv)
    summary.summarize(Path(args.dir), args.figures)
    return 0

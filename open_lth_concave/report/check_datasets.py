"""Check that the datasets a grid needs are on disk before hours of training start.

`python -m open_lth_concave.report.check_datasets NAME...` where each NAME is a preset (its dataset and
pretraining dataset are checked) or a dataset name. Each dataset is read through its registered reader
with downloads disabled (OPEN_LTH_NO_DOWNLOAD=1 unless already set), so a missing file raises the
reader's DatasetMissingError. Exit 0 when all are present, 1 naming each missing one, 2 for bad names.
"""
from __future__ import annotations

import argparse
import os
import sys


def datasets_of(name: str) -> list[str]:
    """Dataset names behind a preset (or the name itself when it is a dataset)."""
    from open_lth_concave.datasets import registry
    if name in registry:
        return [name]
    from open_lth_concave.presets import load_defaults
    defaults = load_defaults(name)
    found = [defaults.get(g, {}).get("dataset_name") for g in ("dataset", "pretrain_dataset")]
    return [d for d in found if d]


def missing(dataset: str) -> str | None:
    """None when both splits can be read; else the reader's one-line explanation."""
    from open_lth_concave.datasets import DatasetMissingError, registry
    from open_lth_concave.datasets.loader import read
    from open_lth_concave.foundations.io import CorruptFileError
    spec = registry.get(dataset)
    if spec.embedded:
        return None
    try:
        for train in (False, True):
            read(spec, train)
    except (DatasetMissingError, CorruptFileError) as e:
        return str(e)
    return None


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPEN_LTH_NO_DOWNLOAD", "1")
    parser = argparse.ArgumentParser(prog="python -m open_lth_concave.report.check_datasets",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="Presets or dataset names.")
    parser.add_argument("--quiet", action="store_true", help="Print nothing; only the exit code tells.")
    args = parser.parse_args(argv)
    from open_lth_concave.foundations.hparams import HparamError
    from open_lth_concave.foundations.paths import datasets_root
    from open_lth_concave.foundations.registry import UnknownNameError
    from open_lth_concave.plugins import load_core, load_plugins
    load_core()
    load_plugins()
    try:
        wanted = sorted({d for n in args.names for d in datasets_of(n)})
        problems = {d: m for d in wanted if (m := missing(d)) is not None}
    except (HparamError, UnknownNameError) as e:
        print(f"check_datasets: error: {e}", file=sys.stderr)
        return 2
    if problems:
        if not args.quiet:
            print(f"Missing dataset(s) under {datasets_root()} (set OPEN_LTH_DATASETS to elsewhere): "
                  f"{', '.join(problems)}", file=sys.stderr)
            for name, message in problems.items():
                print(f"  - {name}: {message}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"All datasets present: {', '.join(wanted)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

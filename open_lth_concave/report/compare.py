"""Compare pruning strategies side by side: lottery runs per strategy and replicate, then a table and a plot.

`open_lth compare --default_hparams=NAME --levels=N --strategies=sparse_global,concave_l1,concave_log
--replicates=3 [lottery flags]` builds, per strategy S and replicate R, exactly the job of
`open_lth lottery --pruning_strategy=S --replicate=R [lottery flags]` and runs those not finished (the
runner skips finished levels and resumes interrupted ones). A flag that belongs to some strategies'
hyperparameters only (e.g. --pruning_fraction) applies to each strategy that has it and is dropped for the
others. A strategy entry may carry its own flags: `concave_l1:pruning_mode=fraction` (entries are split
on commas, so such values cannot hold one). Dense level 0 is trained once per replicate and shared
(lottery/share.py). Defaults for --levels, --replicates and --strategies come from the preset's [job].

Outputs in the comparison folder (default `<root>/compare_<md5 of the sorted experiment names>`):
comparison.csv, comparison.md, comparison.json and comparison.png (see report/table.py).
`open_lth compare --report_only DIR...` redraws them from finished runs (experiment or replicate folders,
ours or open_lth's own).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations.hparams import HparamError

OWN_FLAGS = ("--strategies", "--replicates", "--output_dir", "--report_only")
EXAMPLES = """examples:
  open_lth compare --default_hparams=quick_digits
  open_lth compare --default_hparams=cifar_resnet_20 --levels=3 --replicates=3 \\
      --strategies=sparse_global,concave_l1,concave_log,concave_l1:pruning_mode=fraction
  open_lth compare --report_only ~/open_lth_data/lottery_<hash> ~/open_lth_data/lottery_<hash>/replicate_2
"""
FORBIDDEN = {"--pruning_strategy": "--strategies", "--replicate": "--replicates"}


def _own_parser():
    from open_lth_concave.cli import OneLineParser
    p = OneLineParser(prog="open_lth compare", add_help=False, allow_abbrev=False,
                      description="Compare pruning strategies side by side. Every other flag is a lottery flag "
                                  "(see `open_lth lottery --help`) and applies to every strategy that has it.",
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--strategies", type=str, default=None,
                   help="Comma-separated pruning strategies, each optionally NAME:field=value[:field=value] "
                        "(default: the preset's [job] strategies).")
    p.add_argument("--replicates", type=int, default=None,
                   help="Replicates 1..N per strategy, >= 1 (default: the preset's [job] replicates, else 1).")
    p.add_argument("--output_dir", type=str, default=None,
                   help="Where the comparison files go (default: <root>/compare_<md5 of the experiment names>).")
    p.add_argument("--report_only", action="store_true",
                   help="Train nothing: redraw the comparison from the finished runs in the DIRs given.")
    p.add_argument("-h", "--help", action="store_true", help="Show this help.")
    return p


def comparison_dir(root: Path, experiment_names: list[str]) -> Path:
    digest = hashlib.md5(";".join(sorted(set(experiment_names))).encode("utf-8")).hexdigest()
    return Path(root) / f"compare_{digest}"


def preset_description(name: Optional[str]) -> Optional[str]:
    """The leading comment of a preset file (which paper experiment it is), as one line."""
    from open_lth_concave.presets import PRESET_DIR
    if not name:
        return None
    path = PRESET_DIR / f"{name}.toml"
    if not path.exists():
        return None
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or None


# ---- per-strategy command lines ------------------------------------------------------------------------
def parse_entries(text, valid_check=True) -> list[tuple[str, str, list[str]]]:
    """`a,b:k=v` (or a TOML list) -> [(entry, strategy, ['--k=v'])]; unknown strategies fail with the list."""
    from open_lth_concave.pruning.strategy import registry
    raw = text if isinstance(text, list) else str(text).split(",")
    entries = []
    for item in raw:
        item = str(item).strip()
        if not item:
            continue
        name, *pairs = item.split(":")
        flags = []
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise HparamError(f"invalid strategy entry {item!r}: expected NAME or NAME:field=value[:field=value]")
            flags.append(f"--{key.strip()}={value.strip()}")
        if valid_check:
            registry.get(name.strip())  # UnknownNameError lists the valid strategies
        entries.append((item, name.strip(), flags))
    if not entries:
        raise HparamError("invalid --strategies: give at least one pruning strategy, e.g. sparse_global,concave_l1")
    if len({e[0] for e in entries}) != len(entries):
        raise HparamError(f"invalid --strategies {','.join(e[0] for e in entries)}: an entry is repeated")
    return entries


def _split_flags(tokens: list[str], actions: dict) -> list[tuple[str, list[str]]]:
    """Group argv tokens into (flag, tokens) using the union of the strategies' parsers."""
    from open_lth_concave.cli import UsageError
    items, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-"):
            raise UsageError(f"unexpected argument {token!r} (DIRs are only read with --report_only)")
        name, eq, _ = token.partition("=")
        action = actions.get(name)
        if action is None:
            raise UsageError(f"unrecognized arguments: {token}")
        if eq or action.nargs == 0:
            items.append((name, [token]))
            i += 1
        elif i + 1 < len(tokens):
            items.append((name, [token, tokens[i + 1]]))
            i += 2
        else:
            raise UsageError(f"argument {name}: expected one argument")
    return items


def strategy_argvs(rest: list[str], entries) -> tuple[list[list[str]], list[list[str]]]:
    """Per entry: the lottery argv (shared flags it has + its own flags), and the flags dropped for it."""
    from open_lth_concave.cli import build_parser, strategy_flags
    for flag, instead in FORBIDDEN.items():
        if any(t == flag or t.startswith(flag + "=") for t in rest):
            raise HparamError(f"invalid flag {flag} for compare: use {instead}")
    parsers = {}
    for _, strategy, _ in entries:
        if strategy not in parsers:
            parsers[strategy], _ = build_parser("lottery", rest + [f"--pruning_strategy={strategy}"])
    actions = {k: v for p in parsers.values() for k, v in p._option_string_actions.items()}
    items = _split_flags(rest, actions)
    argvs, dropped = [], []
    for entry, strategy, own in entries:
        known = parsers[strategy]._option_string_actions
        for flag in own:
            key = flag.split("=", 1)[0]
            if key not in known or key in FORBIDDEN:
                raise HparamError(f"invalid strategy entry {entry!r}: {strategy} has no flag {key}; "
                                  f"its own flags: {', '.join(strategy_flags(strategy)) or 'none'}")
        inert = _without_effect(parsers[strategy], rest, strategy, own)
        keep = [name for name, _ in items if name in known and name not in inert]
        argvs.append([t for name, toks in items if name in keep for t in toks] +
                     [f"--pruning_strategy={strategy}"] + own)
        dropped.append([name for name, _ in items if name not in keep])
    return argvs, dropped


def _without_effect(parser, rest: list[str], strategy: str, own: list[str]) -> set[str]:
    """Shared flags that do nothing for this entry under its mode (e.g. --pruning_fraction in threshold
    mode): dropped for it, as flags it does not have are."""
    from open_lth_concave.cli import _defaults, _pre_parse, flags_without_effect
    from open_lth_concave.cli import _strategy_pruning_cls
    known = parser._option_string_actions
    args, _ = parser.parse_known_args([t for t in rest if t.split("=", 1)[0] in known or not t.startswith("-")] +
                                      [f"--pruning_strategy={strategy}"] + own)
    try:
        pruning = _strategy_pruning_cls(strategy).from_args(args, _defaults(_pre_parse(rest).default_hparams).get("pruning"))
    except Exception:   # noqa: BLE001 - a bad value is reported by the lottery job built from this argv
        return set()
    own_keys = {flag.split("=", 1)[0] for flag in own}
    return {f"--{name}" for name in flags_without_effect(pruning) if f"--{name}" not in own_keys}


def finished_line(runner) -> Optional[str]:
    """For a replicate whose report.json covers every level asked for: its last level in a few words
    (remaining weights, accuracy); None when anything is left to run or the report is unreadable."""
    from open_lth_concave.foundations import io
    try:
        rows = io.load_json(runner.replicate_dir / "report.json")["levels"]
        by_level = {int(row["level"]): row for row in rows}
        if any(level not in by_level for level in range(runner.levels + 1)):
            return None
        last = by_level[runner.levels]
        acc = "not trained" if last.get("test_accuracy") is None else f"{100 * float(last['test_accuracy']):.2f}%"
        return (f"level {runner.levels}: remaining weights {100 * float(last['remaining']):.2f}%, ticket test "
                f"accuracy {acc} ({runner.replicate_dir})")
    except Exception:   # noqa: BLE001 - missing or damaged: the runner decides what to redo
        return None


# ---- the two modes ---------------------------------------------------------------------------------------
def _report(experiments, out_dir: Path, extra: dict, labels: Optional[list[str]] = None) -> str:
    from open_lth_concave.report import table
    stats = table.compute(experiments, labels)
    markdown = table.write_all(stats, experiments, out_dir, extra)
    print(markdown)
    print(f"Comparison written to {out_dir}")
    return markdown


def report_only(dirs: list[str], output_dir: Optional[str]) -> int:
    from open_lth_concave.report.runs import read_experiments
    if not dirs:
        raise HparamError("--report_only needs one or more DIRs (lottery_<hash> or replicate_<N> folders)")
    bad = [d for d in dirs if d.startswith("-")]
    if bad:
        raise HparamError(f"invalid argument {bad[0]} with --report_only: only DIRs and --output_dir are allowed")
    missing = [d for d in dirs if not Path(d).is_dir()]
    if missing:
        raise HparamError(f"no lottery runs in {missing[0]}: not a folder")
    experiments = read_experiments([Path(d) for d in dirs])
    out = Path(output_dir) if output_dir else comparison_dir(experiments[0].path.parent, [e.name for e in experiments])
    from open_lth_concave.foundations.io import check_writable_folder
    check_writable_folder(out, "--output_dir")
    _report(experiments, out, {"levels": None, "source": "report_only", "dirs": [str(Path(d)) for d in dirs]})
    return 0


def run_compare(own: argparse.Namespace, rest: list[str]) -> int:
    from open_lth_concave.cli import _defaults, _pre_parse, make_lottery_runner
    from open_lth_concave.report.runs import read_experiment
    preset = _pre_parse(rest).default_hparams
    job = _defaults(preset).get("job", {})
    strategies = own.strategies if own.strategies is not None else job.get("strategies")
    if strategies is None:
        raise HparamError("missing --strategies (comma-separated pruning strategies, e.g. sparse_global,concave_l1)")
    replicates = own.replicates if own.replicates is not None else job.get("replicates", 1)
    if not isinstance(replicates, int) or isinstance(replicates, bool) or not 1 <= replicates <= 1000:
        raise HparamError(f"invalid --replicates {replicates!r}: must be an integer from 1 to 1000")
    entries = parse_entries(strategies)
    argvs, dropped = strategy_argvs(rest, entries)
    runners = {}  # (entry index, replicate) -> runner; all built (validated) before anything runs
    for i, argv in enumerate(argvs):
        for r in range(1, replicates + 1):
            runners[i, r], args = make_lottery_runner(argv + [f"--replicate={r}"])
    names = [runners[i, 1].desc.hashname for i in range(len(entries))]
    if len(set(names)) != len(names):
        same = [entries[i][0] for i, n in enumerate(names) if names.count(n) > 1]
        raise HparamError(f"invalid --strategies: {' and '.join(same)} describe the same experiment")
    root = runners[0, 1].root
    out = Path(own.output_dir) if own.output_dir else comparison_dir(root, names)
    if args.display_output_location:
        print(out)
        return 0
    from open_lth_concave.foundations.io import check_writable_folder
    check_writable_folder(out, "--output_dir")  # found now, not after all the training
    for runner in runners.values():  # an existing experiment made with other hyperparameters stops all, first
        runner.check_record(write=False)
    quiet = args.quiet
    if not quiet:
        for (entry, _, _), gone in zip(entries, dropped):
            if gone:
                print(f"note: {', '.join(gone)} do(es) not apply to {entry}; dropped for it")
    total, k = replicates * len(entries), 0
    for r in range(1, replicates + 1):
        for i in range(len(entries)):
            k += 1
            done = finished_line(runners[i, r])
            if done is not None:   # one compact line, not a banner, for a run already on disk
                print(f"run {k} of {total}: {entries[i][0]} replicate {r}: finished; {done}", flush=True)
                continue
            print(f"run {k} of {total}: {entries[i][0]} replicate {r}", flush=True)
            runners[i, r].run()  # shares a sibling's finished dense level 0 under the experiment's lock
    if args.tensorboard:
        from open_lth_concave.report.tensorboard import write_events
        for runner in runners.values():
            write_events(runner.replicate_dir)
        print(f"TensorBoard events written to <replicate folder>/tensorboard for {len(runners)} runs")
    levels = runners[0, 1].levels
    experiments = [read_experiment(runners[i, 1].replicate_dir.parent, list(range(1, replicates + 1)), levels)
                   for i in range(len(entries))]
    from open_lth_concave.report.table import labels_for
    labels = labels_for(experiments)
    extra = {"preset": preset, "preset_description": preset_description(preset), "levels": levels,
             "replicates": replicates, "entries": [e[0] for e in entries], "root": str(root)}
    _report(experiments, out, extra, labels)
    return 0


def main(argv: list[str]) -> int:
    own, rest = _own_parser().parse_known_args(argv)
    if own.help:
        from open_lth_concave.cli import registered_names_epilog
        _own_parser().print_help()
        print("\n" + registered_names_epilog())
        return 0
    if own.report_only:
        return report_only(rest, own.output_dir)
    return run_compare(own, rest)


if __name__ == "__main__":
    from open_lth_concave.cli import main as cli_main
    sys.exit(cli_main(["compare", *sys.argv[1:]]))

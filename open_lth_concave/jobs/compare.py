"""`open_lth compare`: lottery runs per strategy and replicate, then the comparison (report/compare.py).

`open_lth compare --default_hparams=NAME --levels=N --strategies=sparse_global,concave_l1,concave_log
--replicates=3 [lottery flags]` builds, per strategy S and replicate R, exactly the job of
`open_lth lottery --pruning_strategy=S --replicate=R [lottery flags]` and runs those not finished (the
runner skips finished levels and resumes interrupted ones). A flag that belongs to some strategies'
hyperparameters only (e.g. --pruning_fraction) applies to each strategy that has it and is dropped for the
others. A strategy entry may carry its own flags: `concave_l1:pruning_mode=fraction` (entries are split
on commas, so such values cannot hold one). Dense level 0 is trained once per replicate and shared
(lottery/share.py). Defaults for --levels, --replicates and --strategies come from the preset's [job].
`open_lth compare --report_only DIR...` trains nothing and redraws the comparison from finished runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from open_lth_concave.foundations.hparams import HparamError, Range, range_error
from open_lth_concave.jobs.build import build
from open_lth_concave.jobs.flags import (OneLineParser, UsageError, first_pass, flags_without_effect, parser,
                                         preset_defaults, registered_names_epilog, strategy_flags,
                                         strategy_hparams_cls)
from open_lth_concave.report import compare as report

EXAMPLES = """examples:
  open_lth compare --default_hparams=quick_digits
  open_lth compare --default_hparams=cifar_resnet_20 --levels=3 --replicates=3 \\
      --strategies=sparse_global,concave_l1,concave_log,concave_l1:pruning_mode=fraction
  open_lth compare --report_only ~/open_lth_data/lottery_<hash> ~/open_lth_data/lottery_<hash>/replicate_2
"""
FORBIDDEN = {"--pruning_strategy": "--strategies", "--replicate": "--replicates"}
REPLICATES = Range.parse("[1, 1000]")   # --replicates of compare


def _own_parser() -> OneLineParser:
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


def _flag_name(token: str) -> str:
    return token.split("=", 1)[0]


def _as_argv(p: argparse.ArgumentParser, args: argparse.Namespace, leave_out: set[str]) -> list[str]:
    """The flags given in `args` (every value other than its default; our flags default to None or False)
    as `--name=value` / `--name`, except the names in `leave_out`."""
    argv = []
    for name, value in vars(args).items():
        if name in leave_out or value is None or value == p.get_default(name):
            continue
        argv.append(f"--{name}" if value is True else f"--{name}={value}")
    return argv


def strategy_argvs(rest: list[str], entries) -> tuple[list[list[str]], list[list[str]]]:
    """Per entry: the lottery argv (the shared flags its strategy has and that act under it, plus its own
    flags), and the shared flags dropped for it. Each strategy's own lottery parser decides what it has."""
    for flag, instead in FORBIDDEN.items():
        if any(t == flag or t.startswith(flag + "=") for t in rest):
            raise HparamError(f"invalid flag {flag} for compare: use {instead}")
    parsers, unknown = {}, {}
    for _, strategy, _ in entries:
        if strategy not in parsers:
            parsers[strategy], _ = parser("lottery", rest + [f"--pruning_strategy={strategy}"], exact=True)
            unknown[strategy] = parsers[strategy].parse_known_args(rest + [f"--pruning_strategy={strategy}"])[1]
    for token in next(iter(unknown.values())):   # in the order given: what no strategy takes is an error
        if all(token in extra for extra in unknown.values()):
            if not token.startswith("-"):
                raise UsageError(f"unexpected argument {token!r} (DIRs are only read with --report_only)")
            raise UsageError(f"unrecognized arguments: {token}")
    order = {}
    for token in rest:
        order.setdefault(_flag_name(token), len(order))
    defaults = preset_defaults(first_pass(rest).default_hparams).get("pruning")
    argvs, dropped = [], []
    for entry, strategy, own in entries:
        p = parsers[strategy]
        own_keys = {_flag_name(flag) for flag in own}
        for flag in own:
            key = _flag_name(flag)
            if key in FORBIDDEN or p.parse_known_args([flag])[1]:
                raise HparamError(f"invalid strategy entry {entry!r}: {strategy} has no flag {key}; "
                                  f"its own flags: {', '.join(strategy_flags(strategy)) or 'none'}")
        args = p.parse_known_args(rest + [f"--pruning_strategy={strategy}"] + own)[0]
        inert = _without_effect(args, strategy, defaults, own_keys)
        gone = {_flag_name(t) for t in unknown[strategy] if t.startswith("-")}
        gone |= {f"--{name}" for name in inert if getattr(args, name, None) is not None}
        argvs.append(_as_argv(p, args, inert))
        dropped.append(sorted(gone, key=lambda name: order.get(name, len(order))))
    return argvs, dropped


def _without_effect(args: argparse.Namespace, strategy: str, defaults, own_keys: set[str]) -> set[str]:
    """Shared flags that do nothing for this entry under its mode (e.g. --pruning_fraction in threshold
    mode): dropped for it, as flags it does not have are."""
    try:
        pruning = strategy_hparams_cls(strategy).from_args(args, defaults)
    except Exception:   # noqa: BLE001 - a bad value is reported by the lottery job built from this argv
        return set()
    return {name for name in flags_without_effect(pruning) if f"--{name}" not in own_keys}


# ---- the two modes ---------------------------------------------------------------------------------------
def report_only(dirs: list[str], output_dir) -> int:
    if not dirs:
        raise HparamError("--report_only needs one or more DIRs (lottery_<hash> or replicate_<N> folders)")
    bad = [d for d in dirs if d.startswith("-")]
    if bad:
        raise HparamError(f"invalid argument {bad[0]} with --report_only: only DIRs and --output_dir are allowed")
    report.report_dirs(dirs, output_dir)
    return 0


def run_compare(own: argparse.Namespace, rest: list[str]) -> int:
    from open_lth_concave.presets import preset_description
    from open_lth_concave.report.runs import read_experiment
    from open_lth_concave.report.table import labels_for
    preset = first_pass(rest).default_hparams
    job = preset_defaults(preset).get("job", {})
    strategies = own.strategies if own.strategies is not None else job.get("strategies")
    if strategies is None:
        raise HparamError("missing --strategies (comma-separated pruning strategies, e.g. sparse_global,concave_l1)")
    replicates = own.replicates if own.replicates is not None else job.get("replicates", 1)
    if not isinstance(replicates, int) or isinstance(replicates, bool):
        raise HparamError(f"invalid --replicates {replicates!r}: must be an integer")
    if replicates not in REPLICATES:
        raise range_error("replicates", replicates, REPLICATES)
    entries = parse_entries(strategies)
    argvs, dropped = strategy_argvs(rest, entries)
    jobs = {}  # (entry index, replicate) -> its lottery job; all built (validated) before anything runs
    for i, argv in enumerate(argvs):
        for r in range(1, replicates + 1):
            jobs[i, r] = build("lottery", argv + [f"--replicate={r}"])
    runners = {key: job.runner for key, job in jobs.items()}
    args = jobs[0, 1].args
    names = [runners[i, 1].desc.hashname for i in range(len(entries))]
    if len(set(names)) != len(names):
        same = [entries[i][0] for i, n in enumerate(names) if names.count(n) > 1]
        raise HparamError(f"invalid --strategies: {' and '.join(same)} describe the same experiment")
    root = runners[0, 1].root
    out = Path(own.output_dir) if own.output_dir else report.comparison_dir(root, names)
    if args.display_output_location:
        print(out)
        return 0
    from open_lth_concave.foundations.io import check_writable_folder
    check_writable_folder(out, "--output_dir")  # found now, not after all the training
    for runner in runners.values():  # an existing experiment made with other hyperparameters stops all, first
        runner.check_record(write=False)
    if not args.quiet:
        for (entry, _, _), gone in zip(entries, dropped):
            if gone:
                print(f"note: {', '.join(gone)} do(es) not apply to {entry}; dropped for it")
    total, k = replicates * len(entries), 0
    for r in range(1, replicates + 1):
        for i in range(len(entries)):
            k += 1
            runner = runners[i, r]
            done = report.finished_line(runner.replicate_dir, runner.levels)
            if done is not None:   # one compact line, not a banner, for a run already on disk
                print(f"run {k} of {total}: {entries[i][0]} replicate {r}: finished; {done}", flush=True)
                continue
            print(f"run {k} of {total}: {entries[i][0]} replicate {r}", flush=True)
            runner.run()  # shares a sibling's finished dense level 0 under the experiment's lock
    if args.tensorboard:
        for job in jobs.values():
            job.write_tensorboard()
        print(f"TensorBoard events written to <replicate folder>/tensorboard for {len(runners)} runs")
    levels = runners[0, 1].levels
    experiments = [read_experiment(runners[i, 1].replicate_dir.parent, list(range(1, replicates + 1)), levels)
                   for i in range(len(entries))]
    labels = labels_for(experiments)
    extra = {"preset": preset, "preset_description": preset_description(preset), "levels": levels,
             "replicates": replicates, "entries": [e[0] for e in entries], "root": str(root)}
    report.write_report(experiments, out, extra, labels)
    return 0


def main(argv: list[str]) -> int:
    own, rest = _own_parser().parse_known_args(argv)
    if own.help:
        _own_parser().print_help()
        print("\n" + registered_names_epilog())
        return 0
    if own.report_only:
        return report_only(rest, own.output_dir)
    return run_compare(own, rest)

"""One Markdown page over a grid of comparisons: every table and plot, plus Table III-style times.

`python -m open_lth_concave.report.paper_summary --output ROOT/paper_summary.md COMPARISON_DIR...`
reads each folder's comparison.json / comparison.md (written by `open_lth compare`) and links them by
relative paths, so the page stays valid when the results root is moved. Times per architecture follow
the paper's Table III: the time to find the sparse network (sum of the levels' search times, including
the ticket trainings IMP's searches need) and the training time of the final sparse ticket.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from open_lth_concave.foundations import io, layout
from open_lth_concave.report import names


def _load(folder: Path) -> dict:
    data = io.load_json(folder / layout.comparison_file("json"))
    data["_folder"] = folder
    return data


def _rel(target: Path, page: Path) -> str:
    return Path(os.path.relpath(target, page.parent)).as_posix()


def _final(strategy: dict) -> str:
    levels = [r for r in strategy["levels"] if r["accuracy_mean_pct"] is not None]
    if not levels:
        return "—"
    last = levels[-1]
    return f"{last['accuracy_mean_pct']:.2f} ± {last['accuracy_std_pct']:.2f} @ {last['remaining_pct']:.1f}%"


def render(comparisons: list[dict], page: Path) -> str:
    lines = ["# Concave lottery tickets: results of the experiment grid", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M')} from {len(comparisons)} comparison(s). Accuracies are "
             "ticket test accuracies, mean ± sample std over replicates (%); remaining = percentage of prunable "
             "weights left.", "", "## Overview", "",
             "| Experiment | Model | Dataset | Final level per strategy (accuracy @ remaining) | Table | Plot |",
             "|---|---|---|---|---|---|"]
    for c in comparisons:
        folder = c["_folder"]
        first = c["strategies"][0]
        finals = "<br>".join(f"{names.strategy_name(s['label'])}: {_final(s)}" for s in c["strategies"])
        lines.append(f"| {c.get('preset') or folder.name} | {names.model_name(first['model'])} | "
                     f"{names.dataset_name(first['dataset'])} | {finals} | "
                     f"[table]({_rel(folder / layout.comparison_file('md'), page)}) | [plot]({_rel(folder / layout.comparison_file('png'), page)}) |")
    lines += ["", "## Times (as the paper's Table III)", "",
              "Time to find the sparse network = the levels' mask searches (for IMP: the ticket trainings its "
              "searches consume); training time = the final ticket's training. Means over replicates.", "",
              "| Architecture | Dataset | Strategy | Time to find the sparse network | Training time of the sparse network |",
              "|---|---|---|---:|---:|"]
    seen = set()
    for c in sorted(comparisons, key=lambda c: (c["strategies"][0]["model"], c["strategies"][0]["dataset"])):
        for s in c["strategies"]:
            key = (s["model"], s["dataset"], s["experiment"])
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"| {names.model_name(s['model'])} | {names.dataset_name(s['dataset'])} | "
                         f"{names.strategy_name(s['label'])} | {names.duration(s['find_seconds_mean'])} | "
                         f"{names.duration(s['final_ticket_seconds_mean'])} |")
    for c in comparisons:
        folder = c["_folder"]
        md = (folder / layout.comparison_file("md")).read_text().splitlines()
        body = [line for line in md[1:] if not line.startswith("![")]
        lines += ["", f"## {c.get('preset') or folder.name}: {c['title']}", ""]
        if c.get("preset_description"):
            lines += [f"*{c['preset_description']}*", ""]
        lines += body
        lines += [f"![{c['title']}]({_rel(folder / layout.comparison_file('png'), page)})",
                  "", f"Files: [{folder.name}]({_rel(folder, page)})"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m open_lth_concave.report.paper_summary",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help=f"Comparison folders (holding {layout.comparison_file('json')}).")
    parser.add_argument("--output", required=True, help="The Markdown page to write.")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not (Path(d) / layout.comparison_file("json")).exists()]
    if missing:
        print(f"paper_summary: error: no {layout.comparison_file('json')} in {missing[0]}: run `open_lth compare` first", file=sys.stderr)
        return 2
    page = Path(args.output)
    text = render([_load(Path(d)) for d in args.dirs], page)
    io.save_text(text, page)
    print(f"Summary written to {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

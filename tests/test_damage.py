"""Every file kind a lottery folder holds, damaged in its bytes and in its structure, on a copy of one finished
tiny digits lottery: a rerun recovers the identical result (recomputing what it can, with a note naming the
file) or refuses in one line naming the file (exit 2, nothing changed); `summary` and `compare --report_only`
on the damaged folder show the right numbers, or a note, or refuse in one line -- never a traceback, never a
silent wrong number."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from open_lth_concave import cli
from open_lth_concave.foundations import io

ARGV = ["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--levels=2", "--quiet"]
FINAL, START = "model_ep2_it0.pth", "model_ep0_it0.pth"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished lottery (levels 0-2), its results and its summary, shared by every case."""
    root = tmp_path_factory.mktemp("finished")
    assert cli.main(ARGV + ["--root", str(root)]) == 0
    (exp,) = root.glob("lottery_*")
    return exp, results(exp), summary_tables(exp)


def results(exp: Path) -> tuple:
    rep = exp / "replicate_1"
    rows = [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in io.load_json(rep / "report.json")["levels"]]
    states = {p.relative_to(rep): io.load_torch(p) for p in sorted(rep.glob(f"level_*/main/{FINAL}"))}
    masks = {p.relative_to(rep): p.read_bytes() for p in sorted(rep.glob("level_*/main/mask.pth"))}
    return rows, states, masks


def same_results(a: tuple, b: tuple) -> bool:
    (rows_a, states_a, masks_a), (rows_b, states_b, masks_b) = a, b
    return rows_a == rows_b and masks_a == masks_b and states_a.keys() == states_b.keys() and all(
        states_a[k].keys() == states_b[k].keys() and all(torch.equal(states_a[k][n], states_b[k][n]) for n in states_a[k])
        for k in states_a)


def summary_tables(exp: Path, capsys=None) -> list[str]:
    """The numbers `summary` prints (level rows and per-layer rows)."""
    import contextlib
    import io as pyio
    out, err = pyio.StringIO(), pyio.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["summary", str(exp)])
    rows = [line for line in out.getvalue().splitlines() if line.startswith("| ") and "---" not in line]
    rows = [line if line.startswith("| Tensor") or not line[2].isdigit() or "/" not in line.split("|")[3]
            else "|".join(line.split("|")[:5]) for line in rows]   # level rows without their times
    return [code, rows, err.getvalue()]


# ---- damage -------------------------------------------------------------------------------------------------
def _json(path: Path, value) -> None:
    path.write_text(json.dumps(value))


def _torch(path: Path, change) -> None:
    obj = torch.load(path, weights_only=True)
    torch.save(change(obj), path)


def _drop_first(d: dict) -> dict:
    return {k: v for i, (k, v) in enumerate(d.items()) if i != 0}


def _reshape_first(d: dict) -> dict:
    k = next(iter(d))
    return {**d, k: d[k].reshape(-1)[:-1].clone()}


def _nan_first(d: dict) -> dict:
    k = next(iter(d))
    v = d[k].clone().float()
    v.view(-1)[0] = float("nan")
    return {**d, k: v}


def _half_mask(d: dict) -> dict:
    k = next(iter(d))
    return {**d, k: (d[k].float() * 0.5)}


def _revive(d: dict) -> dict:
    return {k: torch.ones_like(v) for k, v in d.items()}


def _logger_lines(path: Path, keep) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(keep(lines)))


BYTES = {
    "emptied": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "garbage": lambda p: p.write_bytes(bytes(range(256)) * 3),
}
JSON_STRUCTURE = {
    "a list": lambda p: _json(p, [1, 2, 3]),
    "fields of the wrong type": lambda p: _json(p, {k: "x" for k in json.loads(p.read_text())}),
    "no fields": lambda p: _json(p, {}),
}
STATE_STRUCTURE = {
    "a tensor": lambda p: torch.save(torch.zeros(3), p),
    "a missing tensor": lambda p: _torch(p, _drop_first),
    "a wrong shape": lambda p: _torch(p, _reshape_first),
    "NaN": lambda p: _torch(p, _nan_first),
}
KINDS = {
    "mask.pth": {**BYTES, **STATE_STRUCTURE, "values 0.5": lambda p: _torch(p, _half_mask),
                 "revived weights": lambda p: _torch(p, _revive)},
    FINAL: {**BYTES, **STATE_STRUCTURE, "pruned weights not zero": lambda p: _torch(p, _revive_weights)},
    START: {**BYTES, **STATE_STRUCTURE},
    "logger": {**BYTES, "cut at a line boundary": lambda p: _logger_lines(p, lambda ls: ls[: len(ls) // 2]),
               "last evaluation removed": lambda p: _logger_lines(p, lambda ls: ls[:-3]),
               "an accuracy of 7": lambda p: _accuracy_of_7(p)},
    "sparsity_report.json": {**BYTES, **JSON_STRUCTURE, "edited counts": lambda p: _json(
        p, {**json.loads(p.read_text()), "unpruned": json.loads(p.read_text())["unpruned"] - 1000})},
    "pruning.json": {**BYTES, **JSON_STRUCTURE, "another strategy": lambda p: _json(
        p, {**json.loads(p.read_text()), "strategy": "concave_log"})},
    "timing.json": {**BYTES, **JSON_STRUCTURE, "too few iterations": lambda p: _json(
        p, {**json.loads(p.read_text()), "iterations": 3})},
    "platform.json": {**BYTES, **JSON_STRUCTURE},
    "hparams.log": {**BYTES},
}


def _revive_weights(d: dict) -> dict:
    return {k: (v + 1.0 if k.endswith("weight") else v) for k, v in d.items()}


def _accuracy_of_7(path: Path) -> None:
    lines = path.read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("test_accuracy,"))
    name, it, _ = lines[last].rsplit(",", 2)
    lines[last] = f"{name},{it},7.0"
    path.write_text("\n".join(lines) + "\n")

# Every kind and every damage on the last level (recomputable there); on the earlier levels the files whose
# handling differs there: level 1's mask (level 2 was pruned from it), level 0's rewind point and mask.
CASES = [(2, kind, damage) for kind in KINDS if kind != "hparams.log" for damage in KINDS[kind]]
CASES += [(1, "mask.pth", damage) for damage in KINDS["mask.pth"]]
CASES += [(1, kind, "truncated") for kind in (FINAL, "logger", "sparsity_report.json", "timing.json")]
CASES += [(0, START, damage) for damage in KINDS[START]]
CASES += [(0, kind, damage) for kind in ("mask.pth", "hparams.log", FINAL, "logger") for damage in ("truncated", "garbage")]
COMPARE_TOO = {(lv, k, next(iter(KINDS[k]))) for lv, k, _ in CASES} | {(2, k, d) for _, k, d in CASES
                                                                         if d in ("a list", "a missing tensor")}


def expected(level: int, kind: str, damage: str) -> str:
    if kind == "mask.pth" and level == 1:
        return "refused"     # level 2 was pruned from it: recomputing it could change level 2
    return "same"


def copy_of(finished, tmp_path) -> Path:
    exp, _, _ = finished
    root = tmp_path / "root"
    shutil.copytree(exp, root / exp.name)
    return root / exp.name


def snapshot(folder: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_readers(exp: Path, reference_summary: list, damaged: Path, tmp_path: Path, capsys, compare: bool) -> None:
    """summary and compare --report_only on the damaged folder: right numbers, a note, or one refusing line."""
    code, tables, err = summary_tables(exp)
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert err.count("\n") == 1 and damaged.name in err, err
    elif tables != reference_summary[1]:
        assert damaged.name in err, (tables, err)          # different numbers only with a note naming the file
    if compare:   # the same reading as summary's; its plot makes it slower, so once per file kind and then some
        code = cli.main(["compare", "--report_only", str(exp), "--output_dir", str(tmp_path / "cmp")])
        err = capsys.readouterr().err
        assert code in (0, 2) and "Traceback" not in err and (code == 0 or damaged.name in err), err


@pytest.mark.parametrize("level, kind, damage", CASES, ids=[f"L{lv}-{k}-{d}" for lv, k, d in CASES])
def test_damaged_level_file(finished, tmp_path, capsys, level, kind, damage):
    exp = copy_of(finished, tmp_path)
    path = exp / "replicate_1" / f"level_{level}" / "main" / kind
    KINDS[kind][damage](path)
    check_readers(exp, finished[2], path, tmp_path, capsys, (level, kind, damage) in COMPARE_TOO)
    before = snapshot(exp)
    code = cli.main(ARGV + ["--root", str(exp.parent)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if expected(level, kind, damage) == "refused":
        assert code == 2 and err.count("\n") == 1 and str(path) in err and "move" in err, err
        assert snapshot(exp) == before                      # nothing written
    else:
        assert code == 0, err
        assert same_results(results(exp), finished[1])
        if kind in ("mask.pth", FINAL, "logger", "sparsity_report.json", "pruning.json", "timing.json") or \
                (kind == START and level == 0):
            assert kind in err                               # the note names the file it recomputed
        assert summary_tables(exp)[:2] == finished[2][:2]    # and the folder reads back as the original


EXPERIMENT_FILES = {"hparams.json": {**BYTES, "a list": lambda p: _json(p, [1]), "no groups": lambda p: _json(p, {}),
                                     "a group that is not a table": lambda p: _json(
                                         p, {**json.loads(p.read_text()), "model_hparams": 5})},
                    "replicate_1/report.json": {**BYTES, **JSON_STRUCTURE}}
EXPERIMENT_CASES = [(f, d) for f in EXPERIMENT_FILES for d in EXPERIMENT_FILES[f]]


@pytest.mark.parametrize("name, damage", EXPERIMENT_CASES, ids=[f"{f}-{d}" for f, d in EXPERIMENT_CASES])
def test_damaged_experiment_file(finished, tmp_path, capsys, name, damage):
    exp = copy_of(finished, tmp_path)
    path = exp / name
    EXPERIMENT_FILES[name][damage](path)
    check_readers(exp, finished[2], path, tmp_path, capsys, damage in ("garbage", "a list"))
    before = snapshot(exp)
    code = cli.main(ARGV + ["--root", str(exp.parent)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if name == "hparams.json":   # what the experiment was made with cannot be recomputed
        assert code == 2 and err.count("\n") == 1 and str(path) in err, err
        assert snapshot(exp) == before
    else:                        # report.json is rewritten by every run
        assert code == 0, err
        assert same_results(results(exp), finished[1])


# ---- the concave search's relaxed mask (what the next level's search starts from) ----------------------------
CONCAVE = ["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--quiet",
           "--pruning_strategy=concave_log", "--mask_optimizer=scaled"]
RELAXED = {**{k: BYTES[k] for k in ("truncated", "garbage")}, **{k: STATE_STRUCTURE[k] for k in STATE_STRUCTURE},
           "values above 1": lambda p: _torch(p, lambda d: {k: v + 2.0 for k, v in d.items()})}


@pytest.fixture(scope="module")
def concave(tmp_path_factory):
    """A concave lottery finished to level 1, and the same one continued to level 2 (the reference)."""
    one = tmp_path_factory.mktemp("concave1")
    assert cli.main(CONCAVE + ["--levels=1", "--root", str(one)]) == 0
    two = tmp_path_factory.mktemp("concave2")
    shutil.copytree(one, two, dirs_exist_ok=True)
    assert cli.main(CONCAVE + ["--levels=2", "--root", str(two)]) == 0
    return next(one.glob("lottery_*")), results(next(two.glob("lottery_*")))


@pytest.mark.parametrize("damage", RELAXED)
def test_damaged_relaxed_mask_is_recomputed_from_the_finished_search(concave, tmp_path, capsys, damage):
    exp = tmp_path / "root" / concave[0].name
    shutil.copytree(concave[0], exp)
    path = exp / "replicate_1" / "level_1" / "pruning" / "relaxed_mask.pth"
    good = io.load_torch(path)
    RELAXED[damage](path)
    capsys.readouterr()
    assert cli.main(CONCAVE + ["--levels=2", "--root", str(exp.parent)]) == 0
    err = capsys.readouterr().err
    assert "relaxed_mask.pth" in err and "recomputed from the finished search" in err and err.count("\n") == 1, err
    again = io.load_torch(path)
    assert again.keys() == good.keys() and all(torch.equal(again[k], good[k]) for k in good)
    assert same_results(results(exp), concave[1])


# ---- partial deletions -----------------------------------------------------------------------------------------
DELETIONS = {  # what is removed -> what a rerun does
    "level_2/main": "same", "level_2": "same", "level_0/main": "same", "level_2/main/mask.pth": "same",
    f"level_1/main/{FINAL}": "same", "level_1/main/logger": "same", "level_1/main/timing.json": "same",
    "level_1/main/sparsity_report.json": "same", "level_0/main/model_ep0_it0.pth": "same",
    "level_1/main": "refused", "level_1/main/mask.pth": "refused",
}


@pytest.mark.parametrize("removed", DELETIONS)
def test_removed_part_is_redone_or_named(finished, tmp_path, capsys, removed):
    exp = copy_of(finished, tmp_path)
    target = exp / "replicate_1" / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = snapshot(exp)
    code = cli.main(ARGV + ["--root", str(exp.parent)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if DELETIONS[removed] == "same":
        assert code == 0, err
        assert same_results(results(exp), finished[1])
    else:
        assert code == 2 and err.count("\n") == 1, err
        assert f"move {exp / 'replicate_1' / 'level_1'} and every later level folder away" in err
        assert snapshot(exp) == before


def test_branch_on_a_trunk_without_its_rewind_point_names_the_fix(finished, tmp_path, capsys):
    exp = copy_of(finished, tmp_path)
    shutil.rmtree(exp / "replicate_1" / "level_0" / "main")
    trunk = ARGV[1:-2] + ["--root", str(exp.parent), "--quiet"]
    assert cli.main(["lottery_branch", "retrain", *trunk, "--levels=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "level_0/main/model_ep0_it0.pth" in err and "run `open_lth lottery`" in err, err


@pytest.mark.parametrize("removed", ["pruning/relaxed_mask.pth", "pruning"])
def test_removed_concave_search_is_redone_or_named(concave, tmp_path, capsys, removed):
    exp = tmp_path / "root" / concave[0].name
    shutil.copytree(concave[0], exp)
    target = exp / "replicate_1" / "level_1" / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    capsys.readouterr()
    code = cli.main(CONCAVE + ["--levels=2", "--root", str(exp.parent)])
    err = capsys.readouterr().err
    if removed == "pruning":     # the search itself is gone: nothing to recompute the start of level 2 from
        assert code == 2 and err.count("\n") == 1, err
        assert f"move {exp / 'replicate_1' / 'level_1'} and the later level folders away" in err
    else:
        assert code == 0 and "recomputed from the finished search" in err, err
        assert same_results(results(exp), concave[1])


@pytest.mark.parametrize("link", ["dangling", "looping"])
def test_level_folder_that_is_a_broken_link_is_one_line(finished, tmp_path, capsys, link):
    exp = copy_of(finished, tmp_path)
    level = exp / "replicate_1" / "level_2"
    shutil.rmtree(level)
    level.symlink_to(tmp_path / "gone" if link == "dangling" else level)
    assert cli.main(ARGV + ["--root", str(exp.parent)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"level folder {level} is a symbolic link" in err, err
    level.unlink()
    assert cli.main(ARGV + ["--root", str(exp.parent)]) == 0          # removed as told: level 2 is redone
    assert same_results(results(exp), finished[1])


def test_randomly_prune_refuses_unknown_layers_to_ignore(finished, tmp_path, capsys):
    exp = copy_of(finished, tmp_path)
    trunk = ARGV[1:-2] + ["--root", str(exp.parent), "--quiet"]
    before = snapshot(exp)
    assert cli.main(["lottery_branch", "randomly_prune", *trunk, "--levels=1", "--seed=1",
                     "--layers_to_ignore=fc.weight,no_such.weight"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no_such.weight" in err and "fc_layers.0.weight" in err, err
    after = snapshot(exp)
    assert {p: b for p, b in after.items() if p in before} == before          # the trunk untouched
    new = sorted(p.name for p in after if p not in before and p.name != ".content_hashes.json")   # (branch.json's hash)
    assert new in ([], ["branch.json"])   # no mask, no model of the branch


# ---- a killed run's checkpoint, damaged but well-formed ----------------------------------------------------
def _nan_relaxed(state):
    state["strategy"]["relaxed_mask"]["fc_layers.0.weight"][3, 5] = float("nan")


def _nan_momentum(state):
    buffers = [s["momentum_buffer"] for s in state["optimizer"]["state"].values() if "momentum_buffer" in s]
    buffers[-1].view(-1)[7] = float("nan")


def _relaxed_above_one(state):
    state["strategy"]["relaxed_mask"]["fc_layers.1.weight"][0, 0] = 2.0


def _iteration_before_its_logger(state):
    state["iteration"] -= 45          # one epoch earlier than what its logger has logged


@pytest.mark.parametrize("damage", [_nan_relaxed, _nan_momentum, _relaxed_above_one, _iteration_before_its_logger],
                         ids=["nan relaxed mask", "nan momentum", "relaxed mask 2.0", "iteration before its logger"])
def test_a_damaged_search_checkpoint_is_named_and_the_run_redone_identically(tmp_path, capsys, monkeypatch, damage):
    """A soft-mask run stopped mid-epoch leaves a checkpoint; planted damage that keeps it well-formed must
    not be trusted: the run names the file, starts again from its start point, and ends bit for bit as an
    undamaged run."""
    from open_lth_concave.training import loop
    argv = ["train", "--default_hparams=digits_lenet_300_100", "--training_strategy=soft_mask", "--training_steps=3ep",
            "--regularization_lambda=1e-3", "--mask_lr=5", "--threads=1", "--precision=fp32", "--quiet"]
    assert cli.main([*argv, "--root", str(tmp_path / "clean")]) == 0
    (clean,) = list((tmp_path / "clean").glob("train_*/replicate_1/main"))
    with monkeypatch.context() as m:                # stop at iteration 95 (epoch 2, iteration 5), as a signal would
        m.setattr(loop.StopSignals, "requested", lambda self, at, device: at.iteration == 95)
        assert cli.main([*argv, "--root", str(tmp_path / "hurt")]) != 0
    (hurt,) = list((tmp_path / "hurt").glob("train_*/replicate_1/main"))
    state = io.load_torch(hurt / "checkpoint.pth")
    assert state["iteration"] == 95
    damage(state)
    io.save_torch(state, hurt / "checkpoint.pth")
    capsys.readouterr()
    assert cli.main([*argv, "--root", str(tmp_path / "hurt")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoint.pth" in warnings[0] and "starting this run again" in warnings[0], warnings
    assert "set aside as checkpoint.rejected.pth" in warnings[0]
    kept = io.load_torch(hurt / "checkpoint.rejected.pth")          # the damaged checkpoint is kept, not deleted
    assert kept["iteration"] == state["iteration"]
    for name in ("model_ep3_it0.pth", "strategy_final.pth"):
        a, b = io.load_torch(clean / name), io.load_torch(hurt / name)
        flat_a = {k: v for k, v in (a.get("relaxed_mask", a)).items()}
        flat_b = {k: v for k, v in (b.get("relaxed_mask", b)).items()}
        assert flat_a.keys() == flat_b.keys() and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), name
    assert (clean / "logger").read_text() == (hurt / "logger").read_text()


# ---- any single bit flipped anywhere: identical, or refused in one line --------------------------------------
CONCAVE_ARGV = ["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--levels=2", "--quiet",
                "--pruning_strategy=concave_log", "--threads=1", "--precision=fp32"]


@pytest.mark.slow
def test_a_random_bit_flip_anywhere_gives_the_same_result_or_one_line(tmp_path, capsys):
    """A finished 2-level concave lottery; one random bit of one random file flipped (24 seeded trials): the
    rerun either ends with exactly the undamaged results (the file was recomputed, or it is never read
    again) or stops with one line (exit 2), never a silently different result. Every file the package
    writes carries a content hash (foundations/io.py), so well-formed damage is caught too."""
    import random
    import shutil
    root = tmp_path / "clean"
    assert cli.main(CONCAVE_ARGV + ["--root", str(root)]) == 0
    (clean,) = root.glob("lottery_*")
    expected = results(clean)
    files = sorted(p for p in clean.rglob("*") if p.is_file() and p.name != ".lock")
    rng = random.Random(0)
    outcomes = []
    for trial in range(24):
        target = rng.choice(files)
        copy = tmp_path / f"trial_{trial}" / clean.name
        shutil.copytree(clean, copy)
        damaged = copy / target.relative_to(clean)
        data = bytearray(damaged.read_bytes())
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
        damaged.write_bytes(bytes(data))
        capsys.readouterr()
        code = cli.main(CONCAVE_ARGV + ["--root", str(copy.parent)])
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("open_lth")]
        where = f"{target.relative_to(clean)} byte {position}"
        if code == 0:
            assert same_results(results(copy), expected), f"silently different after a flip in {where}"
            outcomes.append("identical")
        else:
            assert code == 2 and len(err) == 1, (where, code, err)
            outcomes.append("refused")
    assert len(outcomes) == 24

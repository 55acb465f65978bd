"""--early_stop=settled: a concave search ends once the set of weights it would prune has settled."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import open_lth_concave.concave  # noqa: F401  (registers the plug-in)
from open_lth_concave import cli
from open_lth_concave.concave.settle import SettleStop, would_prune
from open_lth_concave.foundations import io
from open_lth_concave.pruning.mask import Mask

from conftest import Crash, crash_at_training_batch

# digits: 45 iterations per epoch; 8 epochs of search, scaled mask optimizer (moves masks in short runs)
SEARCH = ["--default_hparams=digits_lenet_300_100", "--training_steps=8ep", "--quiet", "--threads=1",
          "--pruning_strategy=concave_log", "--mask_optimizer=scaled", "--levels=1", "--evaluate_only_at_end"]
SETTLED = ["--early_stop=settled", "--early_stop_tolerance=0.25", "--early_stop_window=2"]


def rule(mode: str = "threshold", n: int = 10, **kw) -> SettleStop:
    s = SettleStop(tolerance=kw.pop("tolerance", 0.1), window=kw.pop("window", 2), mode=mode, threshold=0.3,
                   fraction=kw.pop("fraction", 0.2), total_steps=kw.pop("total_steps", 100), **kw)
    s.bind(torch.ones(n, dtype=torch.bool))
    return s


def test_would_prune_follows_each_modes_rule():
    values = torch.tensor([0.9, 0.1, 0.2, 0.5, 0.05, 0.0, 0.7, 0.25, 0.6, 0.8])
    alive = torch.tensor([True] * 9 + [False])
    below = alive & (values < 0.3)                            # 0.1, 0.2, 0.05, 0.0, 0.25
    assert torch.equal(would_prune(values, alive, 9, "threshold", 0.3, 0.2), below)
    # target: 5 of 9 below alpha is not 20% +- 2 points: exactly ceil(0.2 x 9) = 2, the smallest surviving ones
    assert torch.equal(would_prune(values, alive, 9, "target", 0.3, 0.2), alive & (values <= 0.05))
    # ... nor 60%: topped up to ceil(0.6 x 9) = 6 by value; at 5/9 = 55.6% +- 2: the masks' own choice
    assert torch.equal(would_prune(values, alive, 9, "target", 0.3, 0.6), alive & (values <= 0.5))
    assert torch.equal(would_prune(values, alive, 9, "target", 0.3, 0.56), below)
    # fraction: exactly ceil(0.3 x 9) = 3 smallest, whatever alpha says
    assert torch.equal(would_prune(values, alive, 9, "fraction", 0.01, 0.3), alive & (values <= 0.1))


def test_stops_when_the_set_agrees_with_each_of_the_window_previous_sets():
    s = rule(tolerance=0.2, window=2)     # at most 0.2 x |set| entries may differ
    low = torch.full((10,), 0.9)
    seq = []
    for k in (3, 5, 6, 6, 7):             # how many masks are below alpha at successive points
        v = low.clone()
        v[:k] = 0.0
        seq.append(v)
    stops = [s.observe(10 * i, v) for i, v in enumerate(seq)]
    # point 3: 6 vs {6 (diff 0), 5 (diff 1 <= 1.2)} -> settled; point 2: 6 vs 3 differs by 3 > 1.2
    assert stops == [False, False, False, True, True]
    assert s.stopped_at == 30
    assert [t[2] for t in s.trace] == [1.0, 0.4, 0.5, round(1 / 6, 6)]   # change / |set|
    assert s.summary()["search_steps"] == 30 and s.summary()["planned_steps"] == 100


def test_a_slow_drift_under_the_tolerance_per_point_does_not_stop_it():
    s = rule(n=100, tolerance=0.1, window=3)
    for i, k in enumerate((20, 22, 24, 26, 28, 30)):   # 2 more per point: within 10% of the previous only
        v = torch.full((100,), 0.9)
        v[:k] = 0.0
        assert not s.observe(i, v)


def test_an_empty_or_filling_set_is_not_settled_and_target_waits_for_its_ramp():
    s = rule(n=1000, tolerance=0.01, window=2)
    for i in range(5):
        assert not s.observe(i, torch.full((1000,), 0.9))   # nothing below alpha yet: masks still moving
    for i, k in enumerate((1, 2, 3, 5)):   # the first masks reach alpha: tiny changes against 1000, not against the set
        v = torch.full((1000,), 0.9)
        v[:k] = 0.0
        assert not s.observe(10 + i, v)
    t = rule("target", window=1, fraction=0.5, total_steps=100, start_iteration=1000)
    v = torch.full((10,), 0.9)
    v[:3] = 0.0
    assert not t.observe(1000, v) and not t.observe(1020, v) and not t.observe(1049, v)  # ramp: half of 100 steps
    assert t.observe(1050, v) and t.stopped_at == 1050


def test_observing_an_iteration_again_replaces_it_and_state_round_trips():
    s = rule(tolerance=0.0, window=2)
    a, b = torch.full((10,), 0.9), torch.full((10,), 0.9)
    a[:2] = 0
    b[:4] = 0
    s.observe(0, a)
    s.observe(10, b)
    state = s.state_dict()
    fresh = rule(tolerance=0.0, window=2)
    fresh.load_state_dict(io.load_torch(_roundtrip(state)))
    assert [it for it, _ in fresh.history] == [0, 10] and fresh.trace == s.trace
    fresh.observe(10, b)                  # the same point again (a resume): replaced, not added
    assert [it for it, _ in fresh.history] == [0, 10] and len(fresh.trace) == 2
    assert not fresh.observe(20, b)       # differs from point 0 by 2
    assert fresh.observe(30, b) and fresh.stopped_at == 30


def _roundtrip(state) -> Path:
    import tempfile
    path = Path(tempfile.mkdtemp()) / "s.pth"
    io.save_torch(state, path)
    return path


def only_experiment(root: Path) -> Path:
    (exp,) = [p for p in root.iterdir() if p.name.startswith("lottery_")]
    return exp / "replicate_1" / "level_1"


@pytest.mark.parametrize("every", [None, "20it"])
@pytest.mark.slow
def test_a_settled_search_stops_early_resumes_to_the_same_step_and_shows_in_summary(tmp_path, monkeypatch, capsys,
                                                                                    every):
    """The stop point, the relaxed mask and the level's mask are those of an uninterrupted run when
    the search is killed after a stop decision could have been checkpointed, and resumed. With
    --early_stop_every=20it the points fall inside epochs (45 iterations each) and the search can end
    mid-epoch."""
    settled = SETTLED + ([f"--early_stop_every={every}"] if every else [])
    period = 20 if every else 45
    whole = tmp_path / "whole"
    assert cli.main(["lottery", *SEARCH, *settled, f"--root={whole}"]) == 0
    level = only_experiment(whole)
    metrics = io.load_json(level / "pruning" / "search_metrics.json")
    stop = metrics["early_stop"]
    assert stop["planned_steps"] == 8 * 45 and stop["every"] == period
    assert stop["stopped_at_iteration"] is not None and 0 < stop["search_steps"] < 8 * 45
    assert stop["stopped_at_iteration"] % period == 0 and stop["search_steps"] == stop["stopped_at_iteration"]
    assert [t[0] for t in stop["trace_iteration_share_in_set_change"]] == \
        list(range(0, stop["stopped_at_iteration"] + 1, period))
    timing = io.load_json(level / "pruning" / "search" / "timing.json")
    assert timing["iterations"] == stop["search_steps"] and timing["stopped_at"] == stop["stopped_at_iteration"]
    changes = [c for _, _, c in stop["trace_iteration_share_in_set_change"]]
    assert changes[-1] <= 0.25 < max(changes[2:-1] or [1.0])   # it stopped at the first settled point

    # the same search killed in the epoch after the one before its stop, then resumed
    resumed = tmp_path / "resumed"
    level0_batches = 8 * 45
    undo = crash_at_training_batch(monkeypatch, level0_batches + stop["search_steps"] - 45 + 7)
    with pytest.raises(Crash):
        cli.main(["lottery", *SEARCH, *settled, f"--root={resumed}"])
    undo()
    assert (only_experiment(resumed) / "pruning" / "search" / "checkpoint.pth").exists()
    assert cli.main(["lottery", *SEARCH, *settled, f"--root={resumed}"]) == 0
    level_r = only_experiment(resumed)
    assert io.load_json(level_r / "pruning" / "search_metrics.json")["early_stop"] == stop
    torch.testing.assert_close(dict(Mask.load(level_r / "main" / "mask.pth").items()),
                               dict(Mask.load(level / "main" / "mask.pth").items()), rtol=0, atol=0)
    torch.testing.assert_close(io.load_torch(level_r / "pruning" / "relaxed_mask.pth"),
                               io.load_torch(level / "pruning" / "relaxed_mask.pth"), rtol=0, atol=0)

    capsys.readouterr()
    assert cli.main(["summary", str(level.parent.parent)]) == 0
    out = capsys.readouterr().out
    assert (f"early stop (tolerance 0.25, window 2, every {period} it): settled at iteration "
            f"{stop['stopped_at_iteration']}, "
            f"{stop['search_steps']} of 360 search steps") in out


@pytest.mark.parametrize("mode", ["target", "fraction"])
@pytest.mark.slow
def test_target_and_fraction_modes_stop_early_too(tmp_path, mode):
    root = tmp_path / mode
    assert cli.main(["lottery", *SEARCH, "--early_stop=settled", "--early_stop_tolerance=0.2",
                     "--early_stop_window=1", f"--pruning_mode={mode}", f"--root={root}"]) == 0
    level = only_experiment(root)
    stop = io.load_json(level / "pruning" / "search_metrics.json")["early_stop"]
    assert stop["stopped_at_iteration"] is not None and stop["search_steps"] < 8 * 45
    if mode == "target":
        assert stop["search_steps"] >= 4 * 45    # not before the controller's ramp (half the search) ends
    report = io.load_json(level / "main" / "sparsity_report.json")
    assert report["unpruned"] < report["total"]


def test_the_flags_name_the_experiment_only_when_they_change_what_it_does(tmp_path, capsys):
    def location(*flags: str) -> str:
        capsys.readouterr()
        assert cli.main(["lottery", *SEARCH, *flags, f"--root={tmp_path}", "--display_output_location"]) == 0
        return capsys.readouterr().out.strip().splitlines()[-1]
    plain = location()
    assert location("--early_stop=off") == plain
    settled = location(*SETTLED)
    assert settled != plain and location("--early_stop=settled") not in (plain, settled)
    capsys.readouterr()
    assert cli.main(["lottery", *SEARCH, "--early_stop_window=3", f"--root={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--early_stop_window=3: only with --early_stop=settled (now off)" in err
    assert cli.main(["lottery", *SEARCH, "--early_stop_every=100it", f"--root={tmp_path}"]) == 2
    assert "--early_stop_every=100it: only with --early_stop=settled" in capsys.readouterr().err
    assert location(*SETTLED, "--early_stop_every=1ep") == settled    # the default, spelled out
    assert location(*SETTLED, "--early_stop_every=20it") != settled
    for bad in ("0ep", "0it", "ten"):
        assert cli.main(["lottery", *SEARCH, *SETTLED, f"--early_stop_every={bad}", f"--root={tmp_path}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and bad in err and "early_stop_every" in err
    assert cli.main(["lottery", *SEARCH, "--early_stop=settled", "--early_stop_tolerance=1.5",
                     f"--root={tmp_path}"]) == 2
    assert "invalid --early_stop_tolerance 1.5: must be in [0, 1)" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())       # nothing written by the refused jobs


def test_no_kthvalue_anywhere_in_the_package():
    """CUDA has no deterministic kthvalue (it raises under --deterministic): quantiles come from a sort."""
    import open_lth_concave
    from pathlib import Path
    users = [p.name for p in Path(open_lth_concave.__file__).parent.rglob("*.py") if "kthvalue(" in p.read_text()]
    assert users == []

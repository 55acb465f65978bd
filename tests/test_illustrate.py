"""`open_lth illustrate` end to end on sklearn digits (few draws, short lambda grid), plus its input errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from open_lth_concave.illustrate import IllustrationError, main, run_illustration
from open_lth_concave.illustrate import data
from open_lth_concave.illustrate.experiment import METHODS

from conftest import MNIST_SHARED as SHARED_MNIST  # the repository-relative ../shared copy

LAMBDAS = [1e-4, 1e-2, 1e-1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[dict]]:
    out = tmp_path_factory.mktemp("illustrate") / "out"
    summary = run_illustration(out, draws=3, lambdas=LAMBDAS, seed=1, data_source="digits", quiet=True)
    with open(out / "illustrate.csv") as f:
        rows = list(csv.DictReader(f))
    return out, summary, rows


def _by(rows: list[dict], method: str) -> list[dict]:
    return sorted((r for r in rows if r["method"] == method), key=lambda r: float(r["lambda"] or 0))


def test_csv_has_every_method_and_lambda(run) -> None:
    _, _, rows = run
    assert {r["method"] for r in rows} == set(METHODS)
    assert [r["lambda"] for r in _by(rows, "logreg")] == [""]
    for method in METHODS[1:]:
        assert [float(r["lambda"]) for r in _by(rows, method)] == LAMBDAS
    for r in rows:
        assert 0.0 <= float(r["accuracy_mean"]) <= 1.0 and 0.0 <= float(r["sparsity_mean"]) <= 1.0
        assert r["draws"] == "3" and r["data_source"] == "digits"
    assert len(rows) == 1 + 4 * len(LAMBDAS)


def test_curves_show_the_papers_effects(run) -> None:
    _, summary, rows = run
    assert float(_by(rows, "logreg")[0]["accuracy_mean"]) > 0.95  # 0 vs 1 is easy
    log = _by(rows, "mask_log")
    assert float(log[-1]["sparsity_mean"]) > float(log[0]["sparsity_mean"])
    assert float(log[-1]["sparsity_mean"]) > 0.5  # projected gradient reaches exact zeros
    # subgradient steps oscillate around zero and never land on it, even on the always-black border pixels
    assert all(float(r["sparsity_mean"]) < 0.01 for r in _by(rows, "l1_subgradient"))
    assert summary["dead_pixel_fraction"] > 0.05
    assert summary["data_source"] == "digits" and summary["pixels"] == 64 and summary["draws"] == 3


def test_figures_are_real_pngs(run) -> None:
    out, summary, _ = run
    for name in ("fig3_accuracy_sparsity.png", "fig4_sparse_mask.png"):
        blob = (out / name).read_bytes()
        assert blob[:8] == PNG_MAGIC and len(blob) > 10_000
    assert json.loads((out / "summary.json").read_text())["fig4"] == summary["fig4"]
    assert summary["fig4"] is not None and 0 < summary["fig4"]["kept_pixels"] < 64


@pytest.mark.parametrize("argv_extra", [["--draws", "0"], ["--draws", "many"], ["--data", "imagenet"]])
def test_bad_arguments_return_2_and_write_nothing(tmp_path: Path, capsys, argv_extra: list[str]) -> None:
    out = tmp_path / "out"
    assert main(["--output_dir", str(out), "--data", "digits", *argv_extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert not out.exists()


def test_unwritable_output_dir_returns_2(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["--output_dir", str(blocker / "out"), "--data", "digits"]) == 2
    assert "not writable" in capsys.readouterr().err
    with pytest.raises(IllustrationError):
        run_illustration(blocker, draws=1, data_source="digits", quiet=True)


def test_mnist_requested_but_missing_returns_2(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "empty"))
    out = tmp_path / "out"
    assert main(["--output_dir", str(out), "--data", "mnist"]) == 2
    assert "no MNIST" in capsys.readouterr().err
    assert not out.exists()
    assert data.load_pool("auto").source == "digits"  # auto falls back


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST files not present")
def test_private_idx_reader_on_real_mnist(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mnist").mkdir()
    for f in SHARED_MNIST.iterdir():
        (tmp_path / "mnist" / f.name).symlink_to(f)
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path))
    pool = data.load_pool("auto")
    assert pool.source == "mnist" and pool.x.shape == (773 + 905, 400)  # zeros + ones in MNIST-10k train
    assert pool.x.min() == 0.0 and pool.x.max() == 1.0
    draws = data.make_draws(pool, 2, seed=0)
    assert draws.x_train.shape == (2, 320, 401) and draws.x_val.shape == (2, 80, 401)
    assert (draws.y_train.sum(1) == 160).all() and (draws.y_val.sum(1) == 40).all()  # balanced per digit
    assert (draws.x_train[..., -1] == 1).all()  # intercept column
    assert not np.array_equal(draws.x_train[0], draws.x_train[1])

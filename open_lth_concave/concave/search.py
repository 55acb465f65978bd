"""One level of a mask search (Algorithm 1, lines 2-4), shared by `concave_<regularizer>` and `sigmoid_mask`.

prune(ctx): rewind theta, start the mask variable from the previous level's (or the initial value),
train theta and the mask jointly with this level's training schedule (resumable, in
`<level>/pruning/search`), then prune: every relaxed mask value < alpha becomes 0 ('threshold'), or
exactly ceil(fraction x surviving) smallest values are removed ('fraction', the hard ablation of
Section V-G). Written next to the search: `relaxed_mask.pth` (after pruning; the next level starts
from it) and `search_metrics.json`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch

from open_lth_concave.concave.flat_mask import FlatMaskStrategy
from open_lth_concave.foundations import io
from open_lth_concave.foundations.hparams import HparamError, PruningHparams, hp
from open_lth_concave.pruning.mask import Mask, apply_mask
from open_lth_concave.pruning.sparse_global import prune_exact_count
from open_lth_concave.pruning.strategy import PruningContext, PruningError, PruningStrategy, layers_to_ignore
from open_lth_concave.training.metric_logger import MetricLogger

# Chosen by measurement (README_concave.md). Gradient descent on a product m*theta keeps
# m^2/lr_m - theta^2/lr_theta nearly constant, so with lr_m = lr_theta a mask starting at 0.5 cannot
# fall below ~sqrt(0.25 - theta0^2) ~ 0.49 through the loss, and lambda = 1e-6 moves it by < 1e-3:
# nothing would ever be pruned. lr_m = 100 x lr_theta (~ (m0/theta0)^2 for theta0 ~ 0.05) lets the
# loss move masks as far as it moves weights; the masks then spread over [0,1] by relevance, and
# alpha = 0.4 gives IMP-like sparsity over 3 levels on digits (MNIST-10k 10ep needs alpha ~0.45-0.49).
DEFAULT_MASK_LR_FACTOR = 100.0
DEFAULT_THRESHOLD = 0.4
HISTOGRAM_BINS = 20
RELAXED_MASK_FILE = "relaxed_mask.pth"
METRICS_FILE = "search_metrics.json"


@dataclass(kw_only=True)
class MaskSearchHparams(PruningHparams):
    """Fields every mask search has (the concave strategies add lambda's default and the penalty's own)."""
    regularization_lambda: float = hp(1e-6, "lambda of Eq. 2: weight of the mask penalty, >= 0.")
    threshold: float = hp(DEFAULT_THRESHOLD, "alpha in (0,1): masks below it are pruned after the search "
                          "(0.4 measured on digits; searches that move masks less, e.g. MNIST 10ep, need ~0.45-0.49: README_concave.md).")
    initial_mask_value: float = hp(0.5, "Mask value of every surviving weight at level 1, in (0, 1].")
    mask_lr: Optional[float] = hp(None, "Mask learning rate, >= 0, following the training lr schedule "
                                  "(default: 100 x the training lr, so the loss can move masks; README_concave.md).")
    mask_momentum: Optional[float] = hp(None, "Mask SGD momentum, >= 0 (default: the training momentum).")
    mask_weight_decay: float = hp(0.0, "Mask weight decay, >= 0 (0 = exactly Eq. 2).")
    pruning_mode: str = hp("threshold", "threshold: prune masks < alpha; fraction: prune a fixed share (hard ablation).",
                           choices=["threshold", "fraction"])
    pruning_fraction: float = hp(0.2, "Share of surviving prunable weights removed per level in fraction mode, in (0, 1).")
    pruning_layers_to_ignore: Optional[str] = hp(None, "Comma-separated tensors never masked or pruned (e.g. fc.weight).")

    def validate(self) -> None:
        super().validate()
        if not self.regularization_lambda >= 0:
            raise HparamError(f"invalid --regularization_lambda {self.regularization_lambda}: must be >= 0")
        if not 0 < self.threshold < 1:
            raise HparamError(f"invalid --threshold {self.threshold}: must be in (0, 1)")
        if not 0 < self.initial_mask_value <= 1:
            raise HparamError(f"invalid --initial_mask_value {self.initial_mask_value}: must be in (0, 1]")
        for name in ("mask_lr", "mask_momentum", "mask_weight_decay"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise HparamError(f"invalid --{name} {value}: must be >= 0")
        if not 0 < self.pruning_fraction < 1:
            raise HparamError(f"invalid --pruning_fraction {self.pruning_fraction}: must be in (0, 1)")


class MaskSearch(PruningStrategy):
    """A level = a joint search of theta and a mask from the rewind point, then pruning by mask value."""
    needs_trained_model: ClassVar[bool] = False
    carry_file: ClassVar[str] = RELAXED_MASK_FILE    # what the next level starts from

    # ---- for subclasses ---------------------------------------------------------------------------
    def training_strategy(self, ctx: PruningContext, start: Optional[dict[str, torch.Tensor]]
                          ) -> Callable[..., FlatMaskStrategy]:
        """(model, mask) -> the training strategy of the search, its variable starting at `start`."""
        raise NotImplementedError

    def carried_values(self, strategy: FlatMaskStrategy, relaxed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the next level starts from (after pruning); the relaxed mask by default."""
        return relaxed

    def extra_metrics(self, strategy: FlatMaskStrategy) -> dict[str, Any]:
        return {}

    def mask_lr(self, ctx: PruningContext) -> Optional[float]:
        """--mask_lr, else DEFAULT_MASK_LR_FACTOR x the training lr (None: the training lr itself)."""
        if self.hparams.mask_lr is not None:
            return self.hparams.mask_lr
        training = ctx.extra.get("training_hparams")
        return DEFAULT_MASK_LR_FACTOR * training.lr if training is not None else None

    # ---- the level --------------------------------------------------------------------------------
    def prune(self, ctx: PruningContext) -> Mask:
        h = self.hparams
        ignore = layers_to_ignore(h.pruning_layers_to_ignore)
        unknown = sorted(ignore - set(ctx.current_mask))
        if unknown:
            raise HparamError(f"invalid --pruning_layers_to_ignore {','.join(unknown)}; "
                              f"prunable tensors: {', '.join(ctx.current_mask)}")
        model = ctx.rewind_model()
        apply_mask(model, ctx.current_mask)
        made: list[FlatMaskStrategy] = []
        factory = self.training_strategy(ctx, self._start_values(ctx))

        def make_strategy(model_: torch.nn.Module, mask_: Mask) -> FlatMaskStrategy:
            made.append(factory(model_, mask_))
            return made[-1]

        search_dir = Path(ctx.artifacts_dir) / "search"
        ctx.train(model, ctx.current_mask, search_dir, make_strategy=make_strategy)
        strategy = made[-1]
        relaxed = strategy.relaxed_mask()
        new_mask = self._prune_relaxed(relaxed, ctx.current_mask, ignore)
        self._check_no_dead_layer(new_mask, ignore, ctx.level)
        relaxed_after = {n: relaxed[n] * new_mask[n] for n in relaxed}
        io.save_torch(self.carried_values(strategy, relaxed_after), Path(ctx.artifacts_dir) / self.carry_file)
        if self.carry_file != RELAXED_MASK_FILE:
            io.save_torch(relaxed_after, Path(ctx.artifacts_dir) / RELAXED_MASK_FILE)
        metrics = search_metrics(ctx, strategy, relaxed, ctx.current_mask, new_mask, ignore, search_dir)
        metrics.update({"pruning_mode": h.pruning_mode, "threshold": h.threshold}, **self.extra_metrics(strategy))
        io.save_json(metrics, Path(ctx.artifacts_dir) / METRICS_FILE)
        return new_mask

    def _start_values(self, ctx: PruningContext) -> Optional[dict[str, torch.Tensor]]:
        if ctx.level <= 1 or ctx.previous_artifacts_dir is None:
            return None
        path = Path(ctx.previous_artifacts_dir) / self.carry_file
        if not path.exists():
            raise PruningError(f"level {ctx.level}: the previous level's {self.carry_file} is missing at {path}; "
                               "remove the later levels' folders and run again")
        return io.load_torch(path)

    def _prune_relaxed(self, relaxed: dict[str, torch.Tensor], mask: Mask, ignore: set[str]) -> Mask:
        h = self.hparams
        if h.pruning_mode == "fraction":
            alive = sum(int(mask[n].sum()) for n in relaxed)
            return prune_exact_count(relaxed, mask, math.ceil(h.pruning_fraction * alive), ignore)
        new_mask = Mask({n: v.clone() for n, v in mask.items()})
        for n, values in relaxed.items():
            new_mask[n] = ((values >= h.threshold) & (mask[n] == 1)).float()
        return new_mask

    def _check_no_dead_layer(self, mask: Mask, ignore: set[str], level: int) -> None:
        for n, v in mask.items():
            if n not in ignore and v.numel() and not bool(v.any()):
                raise PruningError(
                    f"level {level}: every weight of layer {n} was pruned (all its masks < alpha = "
                    f"{self.hparams.threshold}); lower --regularization_lambda or --threshold, "
                    "or add the layer to --pruning_layers_to_ignore")


def histogram(values: torch.Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    """Counts of mask values in `bins` equal bins on [0, 1] (1.0 falls in the last bin)."""
    counts = torch.histc(values.float(), bins=bins, min=0.0, max=1.0) if values.numel() else torch.zeros(bins)
    return {"edges": [i / bins for i in range(bins + 1)], "counts": [int(c) for c in counts.tolist()]}


def search_metrics(ctx: PruningContext, strategy: FlatMaskStrategy, relaxed: dict[str, torch.Tensor],
                   before: Mask, after: Mask, ignore: set[str], search_dir: Path) -> dict[str, Any]:
    """The numbers a reader needs to judge a search: losses, penalty, what survived, mask distribution."""
    logger = MetricLogger.load(search_dir / "logger") if (search_dir / "logger").exists() else MetricLogger()
    surviving = torch.cat([relaxed[n][before[n] == 1].flatten() for n in relaxed]) if relaxed else torch.zeros(0)
    layers = {n: {"total": int(v.numel()), "before": int(before[n].sum()), "remaining": int(v.sum())}
              for n, v in after.items()}
    total, remaining = sum(r["total"] for r in layers.values()), sum(r["remaining"] for r in layers.values())
    timing = io.load_json(search_dir / "timing.json") if (search_dir / "timing.json").exists() else {}
    regularizer = getattr(strategy, "regularizer", None)
    value = float(regularizer.value(surviving).sum()) if regularizer is not None else float(surviving.sum())
    return {
        "level": ctx.level,
        "train_loss": logger.last("train_loss"),
        "test_loss": logger.last("test_loss"),
        "test_accuracy": logger.last("test_accuracy"),
        "regularizer_value": value,
        "regularization_lambda": float(getattr(strategy, "lam", 0.0)),
        "penalty": float(getattr(strategy, "lam", 0.0)) * value,
        "remaining": remaining, "total": total, "remaining_fraction": remaining / total if total else 1.0,
        "removed": sum(r["before"] - r["remaining"] for r in layers.values()),
        "layers": layers,
        "ignored_layers": sorted(ignore),
        "mask_histogram": histogram(surviving),
        "mask_min": float(surviving.min()) if surviving.numel() else None,
        "mask_mean": float(surviving.mean()) if surviving.numel() else None,
        "search_seconds": timing.get("seconds"),
    }

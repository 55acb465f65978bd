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
from open_lth_concave.concave.mask_hparams import (DEFAULT_THRESHOLD, MASK_OPTIMIZERS, SCALED_MASK_LR_FACTOR,
                                                   MaskOptimizerHparams)
from open_lth_concave.foundations import io, layout, validate
from open_lth_concave.foundations.hparams import HparamError, PruningHparams, TrainingHparams, hp
from open_lth_concave.pruning.mask import Mask, apply_mask
from open_lth_concave.pruning.sparse_global import prune_exact_count
from open_lth_concave.pruning.strategy import PruningContext, PruningError, PruningStrategy, layers_to_ignore
from open_lth_concave.training.loop import warn
from open_lth_concave.training.metric_logger import MetricLogger
from open_lth_concave.training.optimizers import lr_factor_fn

HISTOGRAM_BINS = 20
# the plug-in's own files in a level's pruning/ folder, declared in the core's output layout
RELAXED_MASK_FILE = layout.declare("relaxed_mask", "relaxed_mask.pth", owner="concave")
METRICS_FILE = layout.declare("search_metrics", "search_metrics.json", owner="concave")
# A level that removes less than this share of its survivors, or more than 1 - it, gets a warning.
WARN_REMOVED = 0.05


@dataclass(kw_only=True)
class MaskSearchHparams(MaskOptimizerHparams, PruningHparams):
    """Fields every mask search has: the mask's (`mask_hparams.MaskOptimizerHparams`) and the search's
    (the concave strategies add lambda's default and the penalty's own)."""
    regularization_lambda: float = hp(1e-6, "lambda of Eq. 2: weight of the mask penalty.", range=">= 0")
    mask_optimizer: str = hp("paper", "paper: the mask is a parameter of the run's own optimizer (its lr, momentum "
                             "and weight decay), as in the paper; scaled: 100 x the training lr and no weight decay "
                             "(moves masks in short runs). --mask_lr/--mask_momentum/--mask_weight_decay override it.",
                             choices=list(MASK_OPTIMIZERS))
    pruning_mode: str = hp("threshold", "threshold: prune masks < alpha; target: adapt the penalty during the search "
                           "so that --pruning_fraction of the survivors fall below alpha, then prune masks < alpha; "
                           "fraction: prune exactly --pruning_fraction by mask value (hard ablation).",
                           choices=["threshold", "target", "fraction"])
    pruning_fraction: float = hp(0.2, "Share of surviving prunable weights removed per level in the target and "
                                 "fraction modes.", range="(0, 1)")
    pruning_layers_to_ignore: Optional[str] = hp(None, "Comma-separated tensors never masked or pruned (e.g. fc.weight).")

    def flags_without_effect(self) -> dict[str, str]:
        """Fields that do nothing under the chosen mode, with why (the command line refuses them when given)."""
        if self.pruning_mode == "threshold":
            return {"pruning_fraction": "it is used by --pruning_mode target or fraction, and the mode is threshold"}
        return {}

    @property
    def alpha(self) -> float:
        """The threshold in force: --threshold, else the default of the chosen mask optimizer."""
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLD[self.mask_optimizer]


@dataclass(frozen=True)
class MaskOptimizer:
    """The mask's parameter group, resolved against the training hyperparameters (None: as training)."""
    lr: Optional[float]
    momentum: Optional[float]
    weight_decay: float

    @classmethod
    def resolve(cls, h: MaskSearchHparams, training: Optional[TrainingHparams]) -> "MaskOptimizer":
        scaled = h.mask_optimizer == "scaled"
        lr = h.mask_lr
        if lr is None and scaled and training is not None:
            lr = SCALED_MASK_LR_FACTOR * training.lr
        decay = h.mask_weight_decay
        if decay is None:
            decay = 0.0 if scaled or training is None else float(training.weight_decay or 0.0)
        return cls(lr=lr, momentum=h.mask_momentum, weight_decay=decay)


def decay_budget(training: TrainingHparams, iterations_per_epoch: int, start: int, end: int,
                 mask: MaskOptimizer) -> dict[str, float]:
    """How far the mask's optimizer can move a mask over the search: the summed mask lr (schedule
    included) over steps start..end divided by (1 - momentum), the per-unit-gradient travel of SGD with
    momentum; D = weight decay x that (a mask the loss does not hold shrinks to about m0 exp(-D))."""
    factor = lr_factor_fn(training, iterations_per_epoch)
    base = mask.lr if mask.lr is not None else training.lr
    momentum = mask.momentum if mask.momentum is not None else (training.nesterov_momentum or training.momentum or 0.0)
    if training.optimizer_name != "sgd":
        momentum = 0.0
    travel = base * sum(factor(i) for i in range(start, end)) / max(1e-12, 1.0 - momentum)
    return {"lr_sum_over_1_minus_momentum": travel, "decay_D": mask.weight_decay * travel}


class MaskSearch(PruningStrategy):
    """A level = a joint search of theta and a mask from the rewind point, then pruning by mask value."""
    needs_trained_model: ClassVar[bool] = False
    carry_file: ClassVar[str] = RELAXED_MASK_FILE    # what the next level starts from

    legend_symbols: ClassVar[dict[str, str]] = {
        "threshold": "α", "regularization_lambda": "λ", "mask_lr": "mask lr", "mask_momentum": "mask momentum",
        "mask_weight_decay": "mask wd", "mask_optimizer": "mask optimizer", "pruning_mode": "mode",
        "pruning_fraction": "fraction", "initial_mask_value": "m₀"}

    @classmethod
    def line_style_of(cls, pruning_hparams: dict[str, Any]) -> str:
        """Dashed for the hard ablation (a fixed fraction per level), as the paper draws it (Fig. 8)."""
        return "--" if pruning_hparams.get("pruning_mode") == "fraction" else cls.line_style

    @classmethod
    def legend_values(cls, pruning_hparams: dict[str, Any]) -> dict[str, Any]:
        """alpha in force, also when it derives from --mask_optimizer (an old record: the recorded value)."""
        if "threshold" not in pruning_hparams:
            return {}
        try:
            return {"threshold": cls.hparams_cls.from_dict(dict(pruning_hparams)).alpha}
        except Exception:   # noqa: BLE001 - a record this version cannot rebuild
            value = pruning_hparams.get("threshold")
            return {"threshold": value} if value is not None else {}

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

    def mask_optimizer(self, ctx: PruningContext) -> MaskOptimizer:
        """The mask's lr / momentum / weight decay for this run (--mask_optimizer and explicit overrides)."""
        return MaskOptimizer.resolve(self.hparams, ctx.training_hparams)

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
        search_dir = Path(ctx.artifacts_dir) / layout.SEARCH
        strategy: FlatMaskStrategy = ctx.train(model, ctx.current_mask, search_dir, make_strategy=self.training_strategy(
            ctx, self._start_values(ctx))).strategy
        relaxed = strategy.relaxed_mask()
        new_mask = self._prune_relaxed(relaxed, ctx.current_mask, ignore)
        self._check_no_dead_layer(new_mask, ignore, ctx.level)
        relaxed_after = {n: relaxed[n] * new_mask[n] for n in relaxed}
        io.save_torch(self.carried_values(strategy, relaxed_after), Path(ctx.artifacts_dir) / self.carry_file)
        if self.carry_file != RELAXED_MASK_FILE:
            io.save_torch(relaxed_after, Path(ctx.artifacts_dir) / RELAXED_MASK_FILE)
        metrics = search_metrics(ctx, strategy, relaxed, ctx.current_mask, new_mask, ignore, search_dir)
        metrics.update({"pruning_mode": h.pruning_mode, "threshold": h.alpha}, **self.extra_metrics(strategy))
        metrics.update(self.budget_metrics(ctx, strategy, relaxed, ctx.current_mask))
        io.save_json(metrics, Path(ctx.artifacts_dir) / METRICS_FILE)
        report_level(metrics, h)
        return new_mask

    def budget_metrics(self, ctx: PruningContext, strategy: FlatMaskStrategy, relaxed: dict[str, torch.Tensor],
                       before: Mask) -> dict[str, Any]:
        """What the mask's optimizer could do over this search (D, the penalty's travel), and where the
        surviving masks ended relative to the decay block m_start * exp(-D) and to alpha."""
        h = self.hparams
        training = ctx.training_hparams
        out: dict[str, Any] = {}
        surviving = torch.cat([relaxed[n][before[n] == 1].flatten().float() for n in relaxed]) \
            if relaxed else torch.zeros(0)
        n = max(1, surviving.numel())
        out["share_exactly_0"] = float((surviving == 0).sum()) / n
        out["share_below_threshold"] = float((surviving < h.alpha).sum()) / n
        out["share_exactly_1"] = float((surviving == 1).sum()) / n
        if surviving.numel():
            q = torch.quantile(surviving[:2_000_000], torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95]))
            out["mask_quantiles_5_25_50_75_95"] = [round(float(v), 6) for v in q]
        target = getattr(strategy, "target", None)
        if target is not None:
            out["target_fraction"] = target.fraction
            out["shrinkage_scale_final"] = target.scale
            # the masks' own share below alpha; above the target, only the lowest target share was pruned
            out["target_capped"] = out["share_below_threshold"] > target.fraction
        opt = self.mask_optimizer(ctx)
        budget = decay_budget(training, ctx.iterations_per_epoch, ctx.start_step.iteration, ctx.end_step.iteration, opt)
        out["mask_optimizer"] = {"name": h.mask_optimizer, "lr": opt.lr if opt.lr is not None else training.lr,
                                 "momentum": opt.momentum, "weight_decay": opt.weight_decay}
        out.update(budget)
        regularizer = getattr(strategy, "regularizer", None)
        lam = float(getattr(strategy, "lam", 0.0))
        if regularizer is not None:
            m0 = torch.tensor([h.initial_mask_value, 0.0])
            d = regularizer.derivative(m0)
            out["penalty_travel_at_initial_mask"] = lam * budget["lr_sum_over_1_minus_momentum"] * float(d[0])
            out["penalty_travel_at_0"] = lam * budget["lr_sum_over_1_minus_momentum"] * float(d[1])
        # the block: a mask the loss does not hold ends near its start value x exp(-D); "inside" = (0, 2x that]
        previous = Path(ctx.previous_artifacts_dir or "") / RELAXED_MASK_FILE
        if ctx.level <= 1 or ctx.previous_artifacts_dir is None or not previous.exists():
            start = torch.full_like(surviving, h.initial_mask_value)
        else:
            start_values = validate.tensors(io.load_torch(previous), previous, {k: before[k].shape for k in relaxed},
                                            "relaxed mask", values="unit")
            start = torch.cat([start_values[k].float()[before[k] == 1].flatten() for k in relaxed])
        top = 2 * start * math.exp(-budget["decay_D"])
        out["decay_block_top_median"] = float(top.median()) if top.numel() else None
        out["share_in_decay_block"] = float(((surviving > 0) & (surviving <= top)).sum()) / n
        return out

    @classmethod
    def level_notes(cls, artifacts_dir: Path) -> list[str]:
        """One line per level for `open_lth summary`: the mask optimizer, its decay budget D and the
        penalty's travel, and where the masks ended (at 0, below alpha, in the decay block)."""
        try:
            m = io.load_json(Path(artifacts_dir) / METRICS_FILE)
        except (io.CorruptFileError, FileNotFoundError, OSError):
            return []
        if not isinstance(m, dict):
            return []

        def num(key: str, fmt: str, scale: float = 1.0) -> str:
            value = m.get(key)
            return format(scale * value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
        opt = m.get("mask_optimizer") if isinstance(m.get("mask_optimizer"), dict) else {}
        parts = [f"{m.get('pruning_mode', '?')} mode, alpha {num('threshold', 'g')}, removed {num('removed', '.0f')}"]
        if opt:
            parts.append(f"mask optimizer {opt.get('name')} (lr {opt.get('lr')}, momentum {opt.get('momentum') or 'as training'}, "
                         f"weight decay {opt.get('weight_decay')})")
        if "decay_D" in m:
            parts.append(f"D = {num('decay_D', '.3g')}, penalty travel {num('penalty_travel_at_initial_mask', '.3g')} "
                         f"at m0 / {num('penalty_travel_at_0', '.3g')} at 0")
        parts.append(f"masks at 0 {num('share_exactly_0', '.1f', 100)}%, below alpha {num('share_below_threshold', '.1f', 100)}%, "
                     f"in the decay block {num('share_in_decay_block', '.1f', 100)}%")
        if "target_fraction" in m:
            parts.append(f"target {num('target_fraction', '.1f', 100)}%{' (capped)' if m.get('target_capped') else ''}")
        stop = early_stop_note(m.get("early_stop"))
        if stop:
            parts.append(stop)
        return ["; ".join(parts)]

    def _start_values(self, ctx: PruningContext) -> Optional[dict[str, torch.Tensor]]:
        if ctx.level <= 1 or ctx.previous_artifacts_dir is None:
            return None
        path = Path(ctx.previous_artifacts_dir) / self.carry_file
        shapes = {n: v.shape for n, v in ctx.current_mask.items()
                  if n not in layers_to_ignore(self.hparams.pruning_layers_to_ignore)}
        unit = "unit" if self.carry_file == RELAXED_MASK_FILE else None
        try:   # read back checked (foundations/validate.py); a damaged or missing one is recomputed from the finished search
            return validate.tensors(io.load_torch(path), path, shapes, "relaxed mask", values=unit)
        except (io.CorruptFileError, io.MissingFileError) as e:
            final = Path(ctx.previous_artifacts_dir) / layout.SEARCH / layout.STRATEGY_FINAL
            try:
                state = io.load_torch(final) if unit and final.exists() else {}
                relaxed = validate.tensors(state.get("relaxed_mask") if isinstance(state, dict) else None, final,
                                           shapes, "relaxed mask", values=unit)
            except io.CorruptFileError:
                raise io.CorruptFileError(f"{e}; it cannot be recomputed: move {Path(ctx.previous_artifacts_dir).parent} "
                                          "and the later level folders away and run again") from None
            warn(f"{e}; recomputed from the finished search in {final.parent}")
            carried = {n: v * ctx.current_mask[n] for n, v in relaxed.items()}
            io.save_torch(carried, path)
            return carried

    def _prune_relaxed(self, relaxed: dict[str, torch.Tensor], mask: Mask, ignore: set[str]) -> Mask:
        """threshold: masks < alpha go. fraction: exactly ceil(fraction x surviving), smallest first.
        target: masks < alpha go, but never more than the target count (the smallest of them go): a
        penalty can only push masks down, so when the loss alone takes more masks below alpha than the
        target asks, only the lowest are pruned (search_metrics.json records both shares)."""
        h = self.hparams
        alive = sum(int(mask[n].sum()) for n in relaxed)
        if h.pruning_mode == "fraction":
            return prune_exact_count(relaxed, mask, math.ceil(h.pruning_fraction * alive), ignore)
        new_mask = Mask({n: v.clone() for n, v in mask.items()})
        for n, values in relaxed.items():
            new_mask[n] = ((values >= h.alpha) & (mask[n] == 1)).float()
        if h.pruning_mode == "target":
            below = alive - sum(int(new_mask[n].sum()) for n in relaxed)
            cap = math.ceil(h.pruning_fraction * alive)
            if below > cap:
                return prune_exact_count(relaxed, mask, cap, ignore)
        return new_mask

    def _check_no_dead_layer(self, mask: Mask, ignore: set[str], level: int) -> None:
        for n, v in mask.items():
            if n not in ignore and v.numel() and not bool(v.any()):
                raise PruningError(
                    f"level {level}: every weight of layer {n} was pruned (all its masks < alpha = "
                    f"{self.hparams.alpha}); lower --regularization_lambda or --threshold, "
                    "or add the layer to --pruning_layers_to_ignore")


def early_stop_note(e: Any) -> str:
    """'early stop (tolerance, window): stopped at step S, N of M steps' or 'did not settle' ('' when off)."""
    if not isinstance(e, dict):
        return ""
    steps, planned = e.get("search_steps"), e.get("planned_steps")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (steps, planned)):
        return ""
    every = f", every {e['every']} it" if isinstance(e.get("every"), int) else ""
    rule = f"early stop (tolerance {e.get('tolerance')}, window {e.get('window')}{every})"
    if e.get("stopped_at_iteration") is None:
        return f"{rule}: did not settle, all {planned} steps"
    return (f"{rule}: settled at iteration {e['stopped_at_iteration']}, {steps} of {planned} search steps "
            f"({100 * steps / max(1, planned):.0f}%)")


def report_level(metrics: dict[str, Any], h: MaskSearchHparams) -> None:
    """One line on what the search did, and a one-line warning naming the knob when a level removes
    almost nothing or almost everything (or misses its target)."""
    ignored = set(metrics.get("ignored_layers", []))
    before = sum(r["before"] for n, r in metrics["layers"].items() if n not in ignored)
    removed = metrics["removed"] / before if before else 0.0
    level, alpha = metrics["level"], h.alpha
    q = metrics.get("mask_quantiles_5_25_50_75_95")
    quantiles = "/".join(f"{v:.3g}" for v in q) if q else "-"
    budget = f"; mask decay D = {metrics['decay_D']:.2f}" if "decay_D" in metrics else ""
    stop = early_stop_note(metrics.get("early_stop"))
    per_layer = ", ".join(f"{n} {100 * (r['before'] - r['remaining']) / r['before']:.0f}%"
                          for n, r in metrics["layers"].items() if n not in ignored and r["before"])
    print(f"Level {level} search: {metrics['removed']} of {before} surviving prunable weights pruned ({100 * removed:.1f}%), "
          f"mask quantiles 5/25/50/75/95% {quantiles}{budget}{'; ' + stop if stop else ''}; removed per layer: "
          f"{per_layer or '-'}", flush=True)
    if h.pruning_mode == "target":
        if removed < h.pruning_fraction - 0.02:
            warn(f"level {level} removed {100 * removed:.1f}% of the surviving weights against the target "
                 f"{100 * h.pruning_fraction:.1f}%: the adapted penalty did not bring enough masks below "
                 f"alpha = {alpha} in time (a longer --training_steps or a larger --regularization_lambda helps)")
        return
    if h.pruning_mode != "threshold":
        return
    if removed < WARN_REMOVED:
        paper_d = f" (D = {metrics['decay_D']:.2f} here; the paper's rounds have D ~ 2.3)" if "decay_D" in metrics else ""
        warn(f"level {level} removed only {100 * removed:.1f}% of the surviving weights: the masks stayed above "
             f"alpha = {alpha}{paper_d}; to prune more, aim with --pruning_mode=target --pruning_fraction=0.2, "
             "or raise --regularization_lambda or --training_steps, or use --mask_optimizer=scaled "
             "with a --threshold near the masks' median")
    elif removed > 1 - WARN_REMOVED:
        warn(f"level {level} removed {100 * removed:.1f}% of the surviving weights (masks below alpha = {alpha}); "
             "to prune less, lower --threshold or --regularization_lambda, or aim with --pruning_mode=target "
             "--pruning_fraction=0.2")


def histogram(values: torch.Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    """Counts of mask values in `bins` equal bins on [0, 1] (1.0 falls in the last bin)."""
    counts = torch.histc(values.float(), bins=bins, min=0.0, max=1.0) if values.numel() else torch.zeros(bins)
    return {"edges": [i / bins for i in range(bins + 1)], "counts": [int(c) for c in counts.tolist()]}


def search_metrics(ctx: PruningContext, strategy: FlatMaskStrategy, relaxed: dict[str, torch.Tensor],
                   before: Mask, after: Mask, ignore: set[str], search_dir: Path) -> dict[str, Any]:
    """The numbers a reader needs to judge a search: losses, penalty, what survived, mask distribution."""
    logger = MetricLogger.load(search_dir / layout.LOGGER) if (search_dir / layout.LOGGER).exists() else MetricLogger()
    surviving = torch.cat([relaxed[n][before[n] == 1].flatten() for n in relaxed]) if relaxed else torch.zeros(0)
    layers = {n: {"total": int(v.numel()), "before": int(before[n].sum()), "remaining": int(v.sum())}
              for n, v in after.items()}
    total, remaining = sum(r["total"] for r in layers.values()), sum(r["remaining"] for r in layers.values())
    timing = io.load_json(search_dir / layout.TIMING) if (search_dir / layout.TIMING).exists() else {}
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

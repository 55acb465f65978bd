"""One level of a mask search (Algorithm 1, lines 2-4), shared by `concave_<regularizer>` and `sigmoid_mask`.

prune(ctx): rewind theta, start the mask variable from the previous level's (or the initial value),
train theta and the mask jointly with this level's training schedule (resumable, in
`<level>/pruning/search`), then prune: every relaxed mask value < alpha becomes 0 ('threshold'), or
exactly ceil(fraction x surviving) smallest values are removed ('fraction', the hard ablation of
Section V-G). Written next to the search: `relaxed_mask.pth` (after pruning; the next level starts
from it) and `search_metrics.json`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch

from open_lth_concave.concave.flat_mask import FlatMaskStrategy
from open_lth_concave.concave.mask_hparams import (DEFAULT_THRESHOLD, MASK_OPTIMIZERS, SCALED_MASK_LR_FACTOR,
                                                   MaskOptimizerHparams)
from open_lth_concave.concave.target import OUTCOMES, SEPARATION, SparsityTarget
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
    mask_optimizer: str = hp("auto", "paper: the mask is a parameter of the run's own optimizer (its lr, momentum "
                             "and weight decay), as in the paper; scaled: 100 x the training lr and no weight decay "
                             "(moves masks by relevance in short runs); auto: paper, but scaled in the target mode. "
                             "--mask_lr/--mask_momentum/--mask_weight_decay override it.",
                             choices=list(MASK_OPTIMIZERS))
    pruning_mode: str = hp("auto", "threshold: prune masks < alpha; target: adapt the penalty during the search "
                           "so that --pruning_fraction of the survivors fall below alpha (the masks decide which "
                           "where they separate; else the lowest by value); fraction: prune exactly "
                           "--pruning_fraction by mask value (hard ablation); auto: threshold when the paper's mask "
                           "optimizer can bring a mask the loss does not hold below alpha within the round (as in "
                           "the paper's rounds), else target.",
                           choices=["auto", "threshold", "target", "fraction"])
    pruning_fraction: float = hp(0.2, "Share of surviving prunable weights removed per level in the target and "
                                 "fraction modes.", range="(0, 1)")
    pruning_layers_to_ignore: Optional[str] = hp(None, "Comma-separated tensors never masked or pruned (e.g. fc.weight).")

    def flags_without_effect(self) -> dict[str, str]:
        """Fields that do nothing under the chosen mode, with why (the command line refuses them when given)."""
        if self.pruning_mode == "threshold":
            return {"pruning_fraction": "it is used by --pruning_mode target or fraction, and the mode is threshold"}
        return {}

    @property
    def optimizer_in_force(self) -> Optional[str]:
        """paper or scaled: --mask_optimizer, or what auto means under the mode (None: the mode is still auto)."""
        if self.mask_optimizer != "auto":
            return self.mask_optimizer
        return {"target": "scaled", "auto": None}.get(self.pruning_mode, "paper")

    @property
    def alpha(self) -> float:
        """The threshold in force: --threshold, else the default of the mask optimizer in force."""
        if self.threshold is not None:
            return self.threshold
        optimizer = self.optimizer_in_force
        if optimizer is None:
            raise ValueError("alpha follows the mask optimizer, which --pruning_mode=auto chooses for the round")
        return DEFAULT_THRESHOLD[optimizer]


@dataclass(frozen=True)
class MaskOptimizer:
    """The mask's parameter group, resolved against the training hyperparameters (None: as training)."""
    lr: Optional[float]
    momentum: Optional[float]
    weight_decay: float

    @classmethod
    def resolve(cls, h: MaskSearchHparams, training: Optional[TrainingHparams]) -> "MaskOptimizer":
        scaled = h.optimizer_in_force == "scaled"
        lr = h.mask_lr
        if lr is None and scaled and training is not None:
            lr = SCALED_MASK_LR_FACTOR * training.lr
        decay = h.mask_weight_decay
        if decay is None:
            decay = 0.0 if scaled or training is None else float(training.weight_decay or 0.0)
        return cls(lr=lr, momentum=h.mask_momentum, weight_decay=decay)


def travel_fn(training: TrainingHparams, iterations_per_epoch: int, start: int,
              mask: MaskOptimizer) -> Callable[[int], float]:
    """lr_t / (1 - momentum) of the mask's optimizer at search step t (iteration start + t): how far SGD
    with momentum moves a mask per unit of gradient in that step (the schedule included)."""
    factor = lr_factor_fn(training, iterations_per_epoch)
    base = mask.lr if mask.lr is not None else training.lr
    momentum = mask.momentum if mask.momentum is not None else (training.nesterov_momentum or training.momentum or 0.0)
    if training.optimizer_name != "sgd":
        momentum = 0.0
    scale = base / max(1e-12, 1.0 - momentum)
    return lambda step: scale * factor(start + step)


def decay_budget(training: TrainingHparams, iterations_per_epoch: int, start: int, end: int,
                 mask: MaskOptimizer) -> dict[str, float]:
    """How far the mask's optimizer can move a mask over the search: the summed mask lr (schedule
    included) over steps start..end divided by (1 - momentum), the per-unit-gradient travel of SGD with
    momentum; D = weight decay x that (a mask the loss does not hold shrinks to about m0 exp(-D))."""
    step_travel = travel_fn(training, iterations_per_epoch, start, mask)
    travel = sum(step_travel(i) for i in range(end - start))
    return {"lr_sum_over_1_minus_momentum": travel, "decay_D": mask.weight_decay * travel}


def unheld_mask_end(m0: float, decay: float, lam: float, derivative: Optional[Callable[[torch.Tensor], torch.Tensor]],
                    travel: float, steps: int = 2000) -> float:
    """The block model: where a mask that the loss does not hold ends after a search, from m0 under
    dm/dtau = -(decay m + lam r'(m)) for tau in [0, travel] (travel = sum of the mask lr / (1 - momentum)),
    projected onto [0, 1]."""
    m, dtau = torch.tensor([float(m0)], dtype=torch.float64), travel / steps
    for _ in range(steps):
        push = decay * m + (lam * derivative(m) if derivative is not None and lam else 0.0)
        m = (m - dtau * push).clamp(0.0, 1.0)
        if float(m) == 0.0:
            break
    return float(m)


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

    def auto_mode(self, ctx: PruningContext) -> tuple[str, str]:
        """What --pruning_mode=auto means for this search, and why (a subclass may decide from the round)."""
        return "threshold", "the default of this search"

    def resolve_auto(self, ctx: PruningContext) -> Optional[dict[str, Any]]:
        """Replace `auto` in the mode and the mask optimizer by what they mean for this round (the flags as
        given stay in the experiment's record and name); None when nothing was auto."""
        h = self._given_hparams = getattr(self, "_given_hparams", None) or self.hparams
        choice: dict[str, Any] = {}
        if h.pruning_mode == "auto":
            mode, why = self.auto_mode(ctx)
            h = dataclasses.replace(h, pruning_mode=mode)
            choice.update(pruning_mode=mode, why=why)
        if h.mask_optimizer == "auto":
            h = dataclasses.replace(h, mask_optimizer=h.optimizer_in_force)
            choice["mask_optimizer"] = h.mask_optimizer
        self.hparams = h
        if choice:
            choice["threshold"] = h.alpha
        return choice or None

    def mask_optimizer(self, ctx: PruningContext) -> MaskOptimizer:
        """The mask's lr / momentum / weight decay for this run (--mask_optimizer and explicit overrides)."""
        return MaskOptimizer.resolve(self.hparams, ctx.training_hparams)

    # ---- the level --------------------------------------------------------------------------------
    def prune(self, ctx: PruningContext) -> Mask:
        auto = self.resolve_auto(ctx)
        h = self.hparams
        if auto is not None:
            print(f"Level {ctx.level} settings: {auto_note(auto)}", flush=True)
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
        new_mask = self._prune_relaxed(relaxed, ctx.current_mask, ignore, getattr(strategy, "target", None))
        self._check_no_dead_layer(new_mask, ignore, ctx.level)
        relaxed_after = {n: relaxed[n] * new_mask[n] for n in relaxed}
        io.save_torch(self.carried_values(strategy, relaxed_after), Path(ctx.artifacts_dir) / self.carry_file)
        if self.carry_file != RELAXED_MASK_FILE:
            io.save_torch(relaxed_after, Path(ctx.artifacts_dir) / RELAXED_MASK_FILE)
        metrics = search_metrics(ctx, strategy, relaxed, ctx.current_mask, new_mask, ignore, search_dir)
        metrics.update({"pruning_mode": h.pruning_mode, "threshold": h.alpha}, **self.extra_metrics(strategy))
        if auto is not None:
            metrics["auto"] = auto
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
            alive = sum(int(before[k].sum()) for k in relaxed)
            below = int(round(out["share_below_threshold"] * n))
            out["target_fraction"] = target.fraction
            out["shrinkage_scale_final"] = target.scale
            # what decided the pruned set: the masks' own share below alpha, or the target count by value
            out["target_outcome"] = target.outcome(below, alive)
            out["target_capped"] = out["target_outcome"] == "capped"
            out["target_separation"] = target.separation
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
        in_block = (surviving > 0) & (surviving <= top)
        out["share_in_decay_block"] = float(in_block.sum()) / n
        # the block model's prediction for a mask the loss does not hold (from the median start value),
        # beside the measured median of the masks in the block
        if surviving.numel():
            derivative = regularizer.derivative if regularizer is not None else None
            out["block_model_end"] = unheld_mask_end(float(start.median()), opt.weight_decay, lam, derivative,
                                                     budget["lr_sum_over_1_minus_momentum"])
            out["decay_block_median"] = float(surviving[in_block].median()) if bool(in_block.any()) else None
        return out

    @classmethod
    def level_notes(cls, artifacts_dir: Path) -> list[str]:
        """One line per level for `open_lth summary`: the mask optimizer, its decay budget D and the
        penalty's travel, and where the masks ended (at 0, below alpha, in the decay block)."""
        try:
            m = io.load_json(Path(artifacts_dir) / METRICS_FILE)
        except io.CorruptFileError as e:   # named, not dropped: nothing else reads it back
            return [f"{e} (the search's notes are missing for this level)"]
        except (FileNotFoundError, OSError):
            return []
        if not isinstance(m, dict):
            return [f"cannot use {Path(artifacts_dir) / METRICS_FILE}: not a record of a search"]

        def num(key: str, fmt: str, scale: float = 1.0) -> str:
            value = m.get(key)
            return format(scale * value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
        opt = m.get("mask_optimizer") if isinstance(m.get("mask_optimizer"), dict) else {}
        parts = [f"{m.get('pruning_mode', '?')} mode, alpha {num('threshold', 'g')}, removed {num('removed', '.0f')}"]
        if isinstance(m.get("auto"), dict) and m["auto"].get("why"):
            parts.append(f"chosen by auto: {m['auto']['why']}")
        if opt:
            parts.append(f"mask optimizer {opt.get('name')} (lr {opt.get('lr')}, momentum {opt.get('momentum') or 'as training'}, "
                         f"weight decay {opt.get('weight_decay')})")
        if "decay_D" in m:
            parts.append(f"D = {num('decay_D', '.3g')}, penalty travel {num('penalty_travel_at_initial_mask', '.3g')} "
                         f"at m0 / {num('penalty_travel_at_0', '.3g')} at 0")
        parts.append(f"masks at 0 {num('share_exactly_0', '.1f', 100)}%, below alpha {num('share_below_threshold', '.1f', 100)}%, "
                     f"in the decay block {num('share_in_decay_block', '.1f', 100)}%")
        if "block_model_end" in m:
            parts.append(f"block model: an unheld mask ends at {num('block_model_end', '.3g')} "
                         f"(measured block median {num('decay_block_median', '.3g')})")
        if "target_fraction" in m:
            note = target_note(m)
            parts.append(f"target {num('target_fraction', '.1f', 100)}%" + (f": {note}" if note else
                                                                          " (capped)" if m.get("target_capped") else ""))
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

    def _prune_relaxed(self, relaxed: dict[str, torch.Tensor], mask: Mask, ignore: set[str],
                       target: Optional[SparsityTarget] = None) -> Mask:
        """threshold: masks < alpha go. fraction: exactly ceil(fraction x surviving), smallest first.
        target: masks < alpha go when their share is the target's (within 2 points: the masks' own
        choice); otherwise exactly the target count, smallest first (`target.outcome` names why:
        more fell below alpha, fewer did, or the masks did not separate and the pressure was released)."""
        h = self.hparams
        alive = sum(int(mask[n].sum()) for n in relaxed)
        count = math.ceil(h.pruning_fraction * alive)
        if h.pruning_mode == "fraction":
            return prune_exact_count(relaxed, mask, count, ignore)
        new_mask = Mask({n: v.clone() for n, v in mask.items()})
        for n, values in relaxed.items():
            new_mask[n] = ((values >= h.alpha) & (mask[n] == 1)).float()
        if h.pruning_mode == "target" and target is not None:
            below = alive - sum(int(new_mask[n].sum()) for n in relaxed)
            if target.outcome(below, alive) != "own choice":
                return prune_exact_count(relaxed, mask, count, ignore)
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


def auto_note(auto: Any) -> str:
    """'auto: target mode, mask optimizer scaled, alpha 0.4 (why)' from search_metrics.json's `auto`."""
    if not isinstance(auto, dict):
        return ""
    chosen = [f"{auto['pruning_mode']} mode" if "pruning_mode" in auto else "",
              f"mask optimizer {auto['mask_optimizer']}" if "mask_optimizer" in auto else "",
              f"alpha {auto['threshold']:g}" if isinstance(auto.get("threshold"), (int, float)) else ""]
    why = f" ({auto['why']})" if auto.get("why") else ""
    return "auto: " + ", ".join(c for c in chosen if c) + why


def target_note(m: dict[str, Any]) -> str:
    """What decided a target-mode level's pruned set, in words ('' without a recorded outcome)."""
    outcome, fraction = m.get("target_outcome"), m.get("target_fraction")
    share = m.get("share_below_threshold")
    if outcome not in OUTCOMES or not isinstance(fraction, (int, float)) or not isinstance(share, (int, float)):
        return ""
    own = f"{100 * share:.1f}% of the masks below alpha on their own"
    return {"own choice": f"the masks' own choice ({own}, target {100 * fraction:.1f}%)",
            "capped": f"capped ({own}; the lowest {100 * fraction:.1f}% by mask value were pruned)",
            "topped up": f"topped up ({own}; the lowest {100 * fraction:.1f}% by mask value were pruned)",
            "fallback": f"fallback (the masks did not separate; pressure released, the lowest {100 * fraction:.1f}% "
                        "by mask value were pruned)"}[outcome]


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
        print(f"Level {level} target: {target_note(metrics)}", flush=True)
        if metrics.get("target_outcome") == "fallback":
            warn(f"level {level}: the masks did not separate under the target pressure (the masks above the target "
                 f"share moved with it: separation {metrics.get('target_separation', 0):.3f} < {SEPARATION}), so the "
                 f"pressure was released and the lowest {100 * h.pruning_fraction:.0f}% were pruned by mask value, "
                 "as --pruning_mode=fraction does; a longer --training_steps or --mask_optimizer=scaled lets the "
                 "masks decide")
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

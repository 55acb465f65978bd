"""The lottery: level 0 trains the dense network; level L>0 asks the pruning strategy for a mask
from level L-1, rewinds the surviving weights to the rewind point and trains the ticket.

Layout under the experiment folder: `replicate_N/level_pretrain/main` (pretraining or rewinding),
`replicate_N/level_L/main` (the ticket: mask.pth, sparsity_report.json, model_*.pth, logger, ...),
`replicate_N/level_L/pruning` (whatever the strategy keeps, e.g. a concave search), and
`replicate_N/report.json` (per level: remaining weights, accuracy, times).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from torch import nn

from open_lth_concave import results
from open_lth_concave.foundations import distributed, io, layout, validate
from open_lth_concave.foundations.desc import LotteryDesc
from open_lth_concave.foundations.errors import MissingFileError, UserError
from open_lth_concave.foundations.hparams import HparamError
from open_lth_concave.foundations.lock import ExperimentLock
from open_lth_concave.foundations.record import record_or_check
from open_lth_concave.foundations.step import Step
from open_lth_concave.platform import Platform
from open_lth_concave.platform import record as platform_record
from open_lth_concave.pruning.mask import Mask, apply_mask
from open_lth_concave.pruning.strategy import PruningContext
from open_lth_concave.pruning.strategy import registry as pruning_registry
from open_lth_concave.training import loop
from open_lth_concave.training.schedule import unreachable_milestones
from open_lth_concave.training.experiment import Data, banner, make_data, make_model
from open_lth_concave.training.strategy import TrainResult


@dataclass
class LotteryRunner:
    desc: LotteryDesc
    levels: int
    root: Path
    replicate: int = 1
    platform: Platform = field(default_factory=Platform)
    quiet: bool = False
    evaluate_only_at_end: bool = False
    train_final_ticket_only: bool = False
    wait_for_lock: bool = True

    # ---- derived ----------------------------------------------------------------------------------
    @property
    def replicate_dir(self) -> Path:
        return self.desc.run_path(self.root, self.replicate)

    def level_dir(self, level: int | str) -> Path:
        return layout.level_dir(self.replicate_dir, level)

    def main_dir(self, level: int | str) -> Path:
        return self.level_dir(level) / layout.MAIN

    def setup(self) -> None:
        """Strategy, data on the device and steps; done once (callers such as `compare` may set up first)."""
        if getattr(self, "_ready", False):
            return
        self.desc.check_training_strategies()
        self.strategy = pruning_registry.get(self.desc.pruning_hparams.pruning_strategy)(self.desc.pruning_hparams)
        if self.train_final_ticket_only and self.strategy.needs_trained_model:
            raise HparamError(f"invalid --train_final_ticket_only with --pruning_strategy "
                              f"{self.desc.pruning_hparams.pruning_strategy}: it prunes from trained tickets, "
                              "so every level must be trained")
        self.data: Data = make_data(self.desc.dataset_hparams, self.desc.training_hparams, self.replicate, self.platform)
        ipe = self.data.iterations_per_epoch
        self.desc.validate_steps(ipe)
        self.end_step = Step.from_str(self.desc.training_hparams.training_steps, ipe)
        self.start_step = Step.zero(ipe)
        if self.desc.pretrains:
            self.pretrain_data = self.data if same_loaders(self.desc) else make_data(
                self.desc.pretrain_dataset_hparams, self.desc.pretrain_training_hparams, self.replicate, self.platform)
            self.pretrain_end = Step.from_str(self.desc.pretrain_training_hparams.training_steps,
                                              self.pretrain_data.iterations_per_epoch)
            if self.desc.rewinds_in_place:
                self.start_step = Step(self.pretrain_end.iteration, ipe)
            self._check_pretrained_model_fits()
        self._ready = True

    def _check_pretrained_model_fits(self) -> None:
        """The pretrained network must carry over to the main data: every tensor but the output layer
        keeps its shape (e.g. a LeNet's input layer differs between 8x8 and 28x28 images)."""
        if tuple(self.pretrain_data.spec.image_shape) == tuple(self.data.spec.image_shape):
            return
        pre = make_model(self.desc.model_hparams, self.pretrain_data.spec, self.replicate)
        main = make_model(self.desc.model_hparams, self.data.spec, self.replicate)
        main_state = main.state_dict()
        for name, value in pre.state_dict().items():
            if name not in main.output_layer_names and value.shape != main_state[name].shape:
                raise HparamError(
                    f"invalid --pretrain_dataset_name {self.desc.pretrain_dataset_hparams.dataset_name}: model "
                    f"{self.desc.model_hparams.model_name}'s {name} has shape {tuple(value.shape)} on it but "
                    f"{tuple(main_state[name].shape)} on {self.desc.dataset_hparams.dataset_name}; only the output "
                    "layer can change between pretraining and the main data")

    # ---- the run ----------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        self.setup()
        print(banner(f"Lottery Ticket Experiment (Replicate {self.replicate})", self.desc.display(),
                     self.replicate_dir, self.platform,
                     self.desc.training_hparams), flush=True)
        self.check_record()
        self._warn_if_platform_differs()
        for hparams in filter(None, (self.desc.training_hparams, self.desc.pretrain_training_hparams)):
            late = unreachable_milestones(hparams, self.data.iterations_per_epoch)
            if late:
                loop.warn(late)
        lock = ExperimentLock(self.replicate_dir).acquire(
            wait=self.wait_for_lock, on_wait=lambda message: print(message, flush=True))
        try:
            self._check_level_folders()
            from open_lth_concave.lottery.share import share_locked
            source = share_locked(self)  # a sibling strategy's finished dense level 0, never trained twice
            if source is not None:
                print(f"dense level 0 shared from {source} (same data, model and training hyperparameters)",
                      flush=True)
            self._establish_initial_weights()
            finished_before = self._all_levels_finished()
            rows = [self._run_level(level) for level in range(self.levels + 1)]
            io.save_json({"levels": rows, "strategy": self.desc.pruning_hparams.pruning_strategy},
                         self.replicate_dir / layout.REPORT)
            if finished_before:
                print(f"finished: nothing to do (every level was finished before); results in {self.replicate_dir}",
                      flush=True)
        finally:
            lock.release()
        return rows

    def _all_levels_finished(self) -> bool:
        """Every level's ticket that this job trains is trained already (a rerun of a finished lottery)."""
        return all(results.is_finished(self.main_dir(level), self.end_step) for level in range(self.levels + 1)
                   if not (self.train_final_ticket_only and 0 < level < self.levels))

    def _check_level_folders(self) -> None:
        """A level folder that is a symbolic link must lead to a folder (not dangle, not loop)."""
        for folder in [self.level_dir(layout.PRETRAIN_LEVEL)] + [self.level_dir(lv) for lv in range(self.levels + 1)]:
            for path in (folder, folder / layout.MAIN):
                if path.is_symlink():
                    try:
                        ok = path.resolve(strict=True).is_dir()
                    except (OSError, RuntimeError):
                        ok = False
                    if not ok:
                        raise UserError(f"level folder {path} is a symbolic link that leads to no folder (missing "
                                        "or looping target): remove the link, or restore its target, and run again")

    def check_record(self, write: bool = True) -> None:
        """The experiment's hparams.json: written when it is created, and every later job under its name
        must resolve to the same values (foundations/record.py); `write=False` only checks."""
        record_or_check(self.desc, self.replicate_dir.parent, write=write, warn=loop.warn)

    def _warn_if_platform_differs(self) -> None:
        """A platform other than level 0's only warns: each run's platform.json shows what it used."""
        trained = platform_record.sessions(self.main_dir(0))
        if trained:
            now = platform_record.current(self.platform, self.desc.training_hparams.apex_fp16)
            changed = platform_record.differences(trained[-1]["platform"], now)
            if changed:
                loop.warn(f"this job runs on another platform than level 0 of {self.replicate_dir} was trained on "
                          f"({'; '.join(changed)}); each run's {layout.PLATFORM} records what it used")

    def _establish_initial_weights(self) -> None:
        start_file = results.model_path(self.main_dir(0), self.start_step)
        model = make_model(self.desc.model_hparams, self.data.spec, self.replicate)
        exists = start_file.exists()
        # under torchrun every process decides before rank 0 writes the file (save_torch ends with a barrier):
        # a process that looked after the write would skip that barrier and the group would hang (seen in CI)
        distributed.barrier()
        if exists:
            try:
                validate.tensors(io.load_torch(start_file), start_file, model.state_dict(), "model state")
                return
            except io.CorruptFileError as e:
                loop.warn(f"{e}; making the initial weights again")
                io.remove(start_file)
        if self.desc.pretrains:
            # built for the pretraining data (its class count), then carried over to the main data
            pre_model = make_model(self.desc.model_hparams, self.pretrain_data.spec, self.replicate)
            pre_dir = self.main_dir(layout.PRETRAIN_LEVEL)
            job = loop.TrainJob(pre_dir, pre_model, Mask.ones_like(pre_model), self.pretrain_data.train,
                                self.pretrain_data.test, self.desc.pretrain_training_hparams,
                                Step.zero(self.pretrain_data.iterations_per_epoch), self.pretrain_end, self.platform,
                                quiet=self.quiet, evaluate_only_at_end=self.evaluate_only_at_end, label="pretrain")
            pre_model, _ = loop.train(job)
            model.load_state_dict(carry_over(pre_model, model))
        io.save_torch(loop.cpu_state(model), start_file)

    def rewind_model(self) -> nn.Module:
        """A model holding level 0's complete state (weights and batch-norm statistics) at the rewind step."""
        return self._load_model(results.model_path(self.main_dir(0), self.start_step), 0)

    def trained_model(self, level: int) -> nn.Module:
        path = results.model_path(self.main_dir(level), self.end_step)
        if not path.exists():
            raise MissingFileError(f"level {level} has no trained ticket at {path}: run `open_lth lottery` with the "
                                   f"same flags (and --levels >= {level}) to train it")
        return self._load_model(path, level)

    def _load_model(self, path: Path, level: int) -> nn.Module:
        """A fresh model with the state in `path`, checked against the model's keys and shapes first."""
        model = make_model(self.desc.model_hparams, self.data.spec, self.replicate)
        try:
            state = validate.tensors(io.load_torch(path), path, model.state_dict(), "model state")
        except MissingFileError:
            raise MissingFileError(f"missing file {path}: run `open_lth lottery` with the same flags (and --levels >= "
                                   f"{level}) to make it again") from None
        except io.CorruptFileError as e:
            raise io.CorruptFileError(f"{e}; run `open_lth lottery` with the same flags (and --levels >= {level}) "
                                      "to make it again") from None
        model.load_state_dict(state)
        return model

    def train_from_rewind(self, model: nn.Module, mask: Mask, output_dir: Path, make_strategy=None,
                          label: str = "train") -> TrainResult:
        job = loop.TrainJob(output_dir, model, mask, self.data.train, self.data.test, self.desc.training_hparams,
                            self.start_step, self.end_step, self.platform,
                            make_strategy=make_strategy or loop.Standard, quiet=self.quiet,
                            evaluate_only_at_end=self.evaluate_only_at_end, label=label)
        return loop.train(job)

    def _mask_shapes(self) -> dict:
        if not hasattr(self, "_shapes"):
            self._shapes = results.mask_shapes(make_model(self.desc.model_hparams, self.data.spec, self.replicate))
        return self._shapes

    def _previous_mask(self, level: int) -> Optional[Mask]:
        """Level `level - 1`'s mask, checked (None at level 0); a missing one is named with its fix."""
        if level == 0:
            return None
        previous_file = self.main_dir(level - 1) / layout.MASK
        if not previous_file.exists():
            raise MissingFileError(f"level {level - 1} has no mask at {previous_file}, so level {level} cannot be "
                                   "pruned from it: run `open_lth lottery` with the same flags to make it again")
        return results.read_mask(previous_file, self._mask_shapes())

    def _existing_mask(self, level: int) -> Optional[Mask]:
        """The level's mask.pth, checked; a damaged one is removed to be recomputed, unless a later level
        was pruned from it (then recomputing could change that level: refused, naming what to move)."""
        main = self.main_dir(level)
        mask_file = main / layout.MASK
        exists = mask_file.exists()
        damage, report_ok, record_error = None, True, None
        if exists:
            try:
                mask = results.read_mask(mask_file, self._mask_shapes(), self._previous_mask(level))
                ticket = self._readable_ticket(level)
                if ticket is not None:
                    results.check_mask_against_ticket(mask, mask_file, ticket)
            except io.CorruptFileError as e:
                damage = e
            if damage is None:
                report_ok = results.report_matches(main / layout.SPARSITY_REPORT, mask)
                strategy = self.desc.pruning_hparams.pruning_strategy
                try:  # level 0's all-ones mask is every strategy's (a shared level 0 names the strategy that made it)
                    results.pruning_record(main / layout.PRUNING_RECORD, strategy if level > 0 else None)
                except (io.CorruptFileError, io.MissingFileError) as e:
                    record_error = e
        # under torchrun every process has read the files before rank 0 rewrites or removes any of them, so
        # all take the same branch and call the same barriers (a late reader would see rank 0's rewrite)
        distributed.barrier()
        if not exists:
            return None
        if damage is not None:
            later = self.main_dir(level + 1) / layout.MASK
            if level > 0 and later.exists():  # level 0's mask (all ones) is always made again exactly
                raise io.CorruptFileError(
                    f"{damage}; level {level + 1} was pruned from it, so it cannot be recomputed without redoing "
                    f"that level: restore the file, or move {self.level_dir(level)} and every later level folder "
                    "away and run again") from None
            loop.warn(f"{damage}; computing the level {level} mask again")
            io.remove(mask_file)
            return None
        report = main / layout.SPARSITY_REPORT
        if not report_ok:
            loop.warn(f"{report} does not hold the counts of {mask_file}; written again from the mask")
            io.save_json(mask.sparsity_report(), report)
        if record_error is not None:
            loop.warn(f"{record_error}; written again with the strategy and an unknown pruning time")
            io.save_json({"strategy": self.desc.pruning_hparams.pruning_strategy, "seconds": None},
                         main / layout.PRUNING_RECORD)
        return mask

    def _readable_ticket(self, level: int) -> Optional[dict]:
        """The level's trained ticket state when it is there and sound (else the loop trains it again)."""
        path = results.model_path(self.main_dir(level), self.end_step)
        if level == 0 or not path.exists():
            return None
        try:
            return self._load_model(path, level).state_dict()
        except io.CorruptFileError:
            return None

    def _mask_for(self, level: int) -> Mask:
        main = self.main_dir(level)
        mask_file = main / layout.MASK
        existing = self._existing_mask(level)
        if existing is not None:
            return existing
        later = self.main_dir(level + 1) / layout.MASK
        if level > 0 and later.exists():  # removed by hand: recomputing it could disagree with the later levels
            raise MissingFileError(f"level {level} has no mask at {mask_file} but level {level + 1} was pruned from it: "
                                   f"move {self.level_dir(level)} and every later level folder away and run again "
                                   "(they are recomputed)")
        if level == 0:
            mask = Mask.ones_like(self.rewind_model())
            seconds = 0.0
        else:
            previous = self._previous_mask(level)
            ctx = PruningContext(
                level=level, current_mask=previous, artifacts_dir=self.level_dir(level) / layout.PRUNING,
                previous_artifacts_dir=self.level_dir(level - 1) / layout.PRUNING if level > 1 else None,
                trained_model=lambda: self.trained_model(level - 1), rewind_model=self.rewind_model,
                train=lambda model, mask, output_dir, make_strategy=None, label=f"level {level} search":
                    self.train_from_rewind(model, mask, output_dir, make_strategy, label),
                training_hparams=self.desc.training_hparams, start_step=self.start_step, end_step=self.end_step,
                replicate=self.replicate)
            began = time.time()
            mask = self.strategy.prune(ctx)
            seconds = time.time() - began
            mask.check_against(self.rewind_model())
        main.mkdir(parents=True, exist_ok=True)
        io.save_json({"strategy": self.desc.pruning_hparams.pruning_strategy, "seconds": seconds},
                     main / layout.PRUNING_RECORD)
        io.save_json(mask.sparsity_report(), main / layout.SPARSITY_REPORT)
        mask.save(mask_file)
        return mask

    def _run_level(self, level: int) -> dict:
        mask = self._mask_for(level)
        main = self.main_dir(level)
        if level == 0:
            io.save_text(self.desc.display() + "\n", main / layout.HPARAMS_LOG)
        train_ticket = not (self.train_final_ticket_only and 0 < level < self.levels)
        if train_ticket:
            model = self.rewind_model()
            apply_mask(model, mask)
            self.train_from_rewind(model, mask, main, label=f"level {level}")
        row = results.level_row(main, level, mask, warn=loop.warn)
        # --quiet silences per-evaluation lines, not the banner or the per-level result
        acc = "not trained" if row["test_accuracy"] is None else f"{100 * row['test_accuracy']:.2f}%"
        print(f"Level {level}: remaining weights {100 * row['remaining']:.2f}% "
              f"({int(row['unpruned'])}/{int(row['total'])}), ticket test accuracy {acc}", flush=True)
        return row


def same_loaders(desc: LotteryDesc) -> bool:
    """Pretraining reads exactly the main run's batches (same data, order seed): one copy on the device."""
    return (desc.pretrain_dataset_hparams == desc.dataset_hparams and
            desc.pretrain_training_hparams.data_order_seed == desc.training_hparams.data_order_seed)


def carry_over(pretrained: nn.Module, fresh: nn.Module) -> dict:
    """The pretrained state for the main data (open_lth's rule): everything, except that the output
    layer is the fresh model's own when the class counts differ."""
    state = {k: v.detach().cpu().clone() for k, v in pretrained.state_dict().items()}
    fresh_state = fresh.state_dict()
    if any(state[n].shape != fresh_state[n].shape for n in fresh.output_layer_names):
        state.update({n: fresh_state[n].detach().cpu().clone() for n in fresh.output_layer_names})
    return state

"""`open_lth train`: one dense training run in `train_<hash>/replicate_N/main`."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from open_lth_concave import results
from open_lth_concave.foundations import io, layout
from open_lth_concave.foundations.desc import TrainingDesc
from open_lth_concave.foundations.lock import ExperimentLock
from open_lth_concave.foundations.record import record_or_check
from open_lth_concave.foundations.step import Step
from open_lth_concave.platform import Platform
from open_lth_concave.platform import record as platform_record
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training import loop
from open_lth_concave.training.schedule import unreachable_milestones
from open_lth_concave.training.experiment import banner, make_data, make_model
from open_lth_concave.training.strategy import registry as training_strategies


@dataclass
class TrainingRunner:
    desc: TrainingDesc
    root: Path
    replicate: int = 1
    platform: Platform = field(default_factory=Platform)
    quiet: bool = False
    evaluate_only_at_end: bool = False

    @property
    def output_dir(self) -> Path:
        return self.desc.run_path(self.root, self.replicate) / layout.MAIN

    def run(self) -> dict:
        data = make_data(self.desc.dataset_hparams, self.desc.training_hparams, self.replicate, self.platform)
        end = Step.from_str(self.desc.training_hparams.training_steps, data.iterations_per_epoch)
        if not self.quiet:
            print(banner(f"Training Experiment (Replicate {self.replicate})", self.desc.display(), self.output_dir, self.platform,
                         self.desc.training_hparams),
                  flush=True)
        model = make_model(self.desc.model_hparams, data.spec, self.replicate)
        record_or_check(self.desc, self.output_dir.parent.parent, warn=loop.warn)
        late = unreachable_milestones(self.desc.training_hparams, data.iterations_per_epoch)
        if late:
            loop.warn(late)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        io.save_text(self.desc.display() + "\n", self.output_dir / layout.HPARAMS_LOG)
        strategy_cls = training_strategies.get(self.desc.training_hparams.training_strategy)
        if self.desc.training_strategy_hparams is not None:   # the strategy's own flags
            strategy_cls = functools.partial(strategy_cls, hparams=self.desc.training_strategy_hparams)
        job = loop.TrainJob(self.output_dir, model, Mask.ones_like(model), data.train, data.test,
                            self.desc.training_hparams, Step.zero(data.iterations_per_epoch), end, self.platform,
                            make_strategy=strategy_cls, quiet=self.quiet,
                            evaluate_only_at_end=self.evaluate_only_at_end)
        with ExperimentLock(self.output_dir.parent):
            loop.train(job)
        return results.load_final_metrics(self.output_dir)


def train_replicates_together(desc: TrainingDesc, root: Path, replicates: list[int], platform: Platform,
                              quiet: bool = False) -> dict[int, dict]:
    """`open_lth train --replicates_together K`: replicates trained at once (`training/stacked.py`),
    each written to its own `replicate_N/main` exactly where a separate run would write it, so later
    commands find it finished. Finished replicates are skipped; an interrupted call resumes from the
    stacked checkpoint of the last epoch boundary."""
    from contextlib import ExitStack

    from open_lth_concave.foundations import distributed
    from open_lth_concave.foundations.hparams import HparamError
    from open_lth_concave.training.metric_logger import MetricLogger
    from open_lth_concave.training.stacked import train_stacked

    if desc.training_hparams.training_strategy != "standard":
        raise HparamError(f"--replicates_together trains with the standard strategy only, not "
                          f"--training_strategy={desc.training_hparams.training_strategy}")
    if distributed.world_size() > 1:
        raise HparamError("--replicates_together runs in one process; do not launch it with torchrun")
    runners = [TrainingRunner(desc, root, r, platform, quiet, True) for r in replicates]
    data = {r.replicate: make_data(desc.dataset_hparams, desc.training_hparams, r.replicate, platform) for r in runners}
    end = Step.from_str(desc.training_hparams.training_steps, data[replicates[0]].iterations_per_epoch)
    record_or_check(desc, runners[0].output_dir.parent.parent, warn=loop.warn)
    todo = [r for r in runners if not results.is_finished(r.output_dir, end)]
    if not quiet:
        print(banner(f"Training Experiment (Replicates {replicates[0]}-{replicates[-1]} together)", desc.display(),
                     runners[0].output_dir.parent.parent, platform, desc.training_hparams), flush=True)
    with ExitStack() as stack:
        for r in todo:
            r.output_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(ExperimentLock(r.output_dir.parent))
        todo = [r for r in todo if not results.is_finished(r.output_dir, end)]   # another process may have finished some
        if todo:
            models = []
            for r in todo:
                io.save_text(desc.display() + "\n", r.output_dir / layout.HPARAMS_LOG)
                model = make_model(desc.model_hparams, data[r.replicate].spec, r.replicate)
                io.save_torch({k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                              results.model_path(r.output_dir, Step.zero(end.iterations_per_epoch)))
                models.append(model)
            checkpoint = todo[0].output_dir / layout.stacked_checkpoint([r.replicate for r in todo])
            used = platform_record.current(platform, desc.training_hparams.apex_fp16)
            for r in todo:  # a resumed stacked run keeps its earlier sessions (it restarts at an epoch boundary)
                platform_record.start_session(r.output_dir, used, 0, resumed=checkpoint.exists())
            result = train_stacked(models, [data[r.replicate].train for r in todo], data[todo[0].replicate].test,
                                   desc.training_hparams, end, platform, checkpoint=checkpoint)
            for r, model, acc, loss in zip(todo, result.models, result.test_accuracy, result.test_loss):
                logger = MetricLogger()
                logger.add("test_loss", end.iteration, loss)
                logger.add("test_accuracy", end.iteration, acc)
                logger.add("test_examples", end.iteration, data[r.replicate].test.num_examples)
                logger.save(r.output_dir / layout.LOGGER)
                io.save_json({"trained_together_with": [t.replicate for t in todo]}, r.output_dir / layout.STACKED_RECORD)
                io.save_torch(model.state_dict(), results.model_path(r.output_dir, end))   # last: marks it finished
    return {r.replicate: results.load_final_metrics(r.output_dir) for r in runners}

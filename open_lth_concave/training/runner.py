"""`open_lth train`: one dense training run in `train_<hash>/replicate_N/main`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from open_lth_concave.foundations import io
from open_lth_concave.foundations.lock import ExperimentLock
from open_lth_concave.foundations.step import Step
from open_lth_concave.lottery.desc import TrainingDesc
from open_lth_concave.lottery.experiment import banner, make_data, make_model
from open_lth_concave.platform import Platform
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training import loop
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
        return self.desc.run_path(self.root, self.replicate) / "main"

    def run(self) -> dict:
        data = make_data(self.desc.dataset_hparams, self.desc.training_hparams, self.replicate, self.platform)
        end = Step.from_str(self.desc.training_hparams.training_steps, data.iterations_per_epoch)
        if not self.quiet:
            print(banner(f"Training Experiment (Replicate {self.replicate})", self.desc.display(), self.output_dir, self.platform,
                         self.desc.training_hparams),
                  flush=True)
        model = make_model(self.desc.model_hparams, data.spec, self.replicate)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        io.save_json(self.desc.to_dict(), self.output_dir.parent.parent / "hparams.json")
        io.save_text(self.desc.display() + "\n", self.output_dir / "hparams.log")
        strategy_cls = training_strategies.get(self.desc.training_hparams.training_strategy)
        job = loop.TrainJob(self.output_dir, model, Mask.ones_like(model), data.train, data.test,
                            self.desc.training_hparams, Step.zero(data.iterations_per_epoch), end, self.platform,
                            make_strategy=strategy_cls, quiet=self.quiet,
                            evaluate_only_at_end=self.evaluate_only_at_end)
        with ExperimentLock(self.output_dir.parent):
            loop.train(job)
        return loop.load_final_metrics(self.output_dir)

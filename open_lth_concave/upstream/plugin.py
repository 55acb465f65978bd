"""What runs inside an upstream open_lth checkout: this package's mask searches as upstream strategies.

`register()` is the plug-in the hook edits call (entry point `open_lth.plugins: concave`, or
$OPEN_LTH_PLUGINS): for every mask-search strategy registered here (`concave_<regularizer>` for each
regularizer, `sigmoid_mask`) it adds to upstream's `pruning.registry.registered_strategies` a strategy
whose hyperparameters are an upstream `Hparams` dataclass built from ours (same fields, types, defaults
and help, so the same flags give the same canonical text and experiment name as our core) and whose
`prune` runs our `MaskSearch.prune` with a `PruningContext` made of upstream's own pieces:

- the rewind point: level 0's model at `desc.train_start_step`, loaded by upstream's models registry;
- training: upstream's `training.train.train` with its data loaders, optimizer, learning-rate schedule,
  standard callbacks, checkpoints and platform. The searched network is a `SearchModel` (an upstream
  `Model`) whose forward is the soft mask's, whose loss adds the strategy's penalty while training, whose
  `training_hooks` (the hook edits) add the mask's parameter group and call the strategy before and after
  each optimizer step and at each epoch start, and whose state dict carries the strategy's state
  (`get_extra_state`), so upstream's checkpoints resume a search;
- the artifacts: `replicate_N/level_L/pruning/` (search run, relaxed_mask.pth, search_metrics.json), the
  layout our core uses, so `open_lth summary` and `compare` read them.

Upstream modules are imported by their top-level names (pruning, models, training, ...), only here.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Optional

UPSTREAM_TYPES = (bool, str, float, int)


def register() -> None:
    import pruning.registry as up_registry
    from open_lth_concave.concave.search import MaskSearch
    from open_lth_concave.plugins import load_core, load_plugins
    from open_lth_concave.pruning.strategy import registry as ours
    load_core()
    load_plugins()
    for name in ours.list():
        cls = ours.get(name)
        if isinstance(cls, type) and issubclass(cls, MaskSearch) and name not in up_registry.registered_strategies:
            up_registry.registered_strategies[name] = upstream_strategy(name, cls)


def to_ours(h: Any, our_cls: type) -> Any:
    """Our hyperparameters (validated) from an upstream instance of the generated class."""
    values = {f.name: getattr(h, f.name) for f in dataclasses.fields(our_cls.hparams_cls)}
    return our_cls.hparams_cls.from_dict(values)


def upstream_hparams_cls(name: str, our_cls: type) -> type:
    """An upstream PruningHparams subclass with our strategy's fields (upstream's flag and hash rules)."""
    from foundations import hparams as up_hparams
    ours = our_cls.hparams_cls
    types = ours.field_types()
    specs: list[tuple] = [("_name", str, dataclasses.field(default=ours._group_name)),
                          ("_description", str, dataclasses.field(
                              default=(ours._description or our_cls.description or "").strip()))]
    namespace: dict[str, Any] = {}
    for f in dataclasses.fields(ours):
        if f.name == "pruning_strategy":
            continue
        typ, _ = types[f.name]
        if typ not in UPSTREAM_TYPES:
            raise TypeError(f"{name}: field {f.name} has type {typ}, which open_lth's flags cannot express")
        if typ is bool and f.default is not False:
            raise TypeError(f"{name}: boolean field {f.name} must default to False in open_lth")
        specs.append((f.name, typ, dataclasses.field(default=f.default)))
        help_text = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            help_text += f" One of: {', '.join(map(str, f.metadata['choices']))}."
        namespace[f"_{f.name}"] = help_text

    def __post_init__(self) -> None:
        up_hparams.Hparams.__post_init__(self)
        to_ours(self, our_cls)          # a bad value stops the job here, before anything runs
    namespace["__post_init__"] = __post_init__
    cls_name = "".join(part.title() for part in name.split("_")) + "UpstreamHparams"
    return dataclasses.make_dataclass(cls_name, specs, bases=(up_hparams.PruningHparams,), namespace=namespace)


def upstream_strategy(name: str, our_cls: type) -> type:
    from pruning import base as up_base
    hparams_cls = upstream_hparams_cls(name, our_cls)

    class Strategy(up_base.Strategy):
        takes_lottery_context = True     # the hook edits pass lottery=<runner>, level=<L>

        @staticmethod
        def get_pruning_hparams() -> type:
            return hparams_cls

        @staticmethod
        def prune(pruning_hparams, trained_model, current_mask=None, lottery=None, level=None):
            return search_level(our_cls, pruning_hparams, current_mask, lottery, level)

    Strategy.__name__ = Strategy.__qualname__ = "".join(p.title() for p in name.split("_")) + "Strategy"
    Strategy.__doc__ = our_cls.description
    return Strategy


def our_training_hparams(up: Any) -> Any:
    from open_lth_concave.foundations.hparams import TrainingHparams
    names = {f.name for f in dataclasses.fields(TrainingHparams)}
    return TrainingHparams.from_dict({f.name: getattr(up, f.name) for f in dataclasses.fields(up)
                                      if f.name in names and not f.name.startswith("_")})


def search_level(our_cls: type, h: Any, current_mask: Any, lottery: Any, level: Optional[int]) -> Any:
    """Level `level`'s mask from our search, run with upstream's pieces (see the module docstring)."""
    import datasets.registry as up_datasets
    import models.registry as up_models
    from platforms.platform import get_platform
    from pruning.mask import Mask as UpMask

    from open_lth_concave.foundations import layout
    from open_lth_concave.foundations.step import Step
    from open_lth_concave.pruning.mask import Mask
    from open_lth_concave.pruning.strategy import PruningContext
    if lottery is None or level is None:
        raise ValueError(f"pruning strategy {h.pruning_strategy} searches from the rewind point and needs the "
                         "lottery context: apply the hook edits (open_lth upstream patch PATH)")
    platform = get_platform()
    if platform.is_distributed or platform.is_parallel:
        raise ValueError(f"pruning strategy {h.pruning_strategy} runs its search on one device: make one GPU "
                         "visible (CUDA_VISIBLE_DEVICES=0) or run on CPU")
    desc, replicate = lottery.desc, lottery.replicate
    if current_mask is None:
        current_mask = UpMask.ones_like(up_models.get(desc.model_hparams, desc.train_outputs))

    def level_dir(lv: int) -> Path:
        return Path(desc.run_path(replicate, lv)).parent

    start, end = desc.train_start_step, desc.train_end_step

    def load(lv: int, step: Any):
        return up_models.load(desc.run_path(replicate, lv), step, desc.model_hparams, desc.train_outputs)

    ipe = int(up_datasets.iterations_per_epoch(desc.dataset_hparams))
    # open_lth counts steps with NumPy integers; the search gets plain ones (its state is saved in checkpoints)
    our_start, our_end = Step(int(start.iteration), ipe), Step(int(end.iteration), ipe)
    ctx = PruningContext(
        level=level, current_mask=Mask({k: v.detach().float().cpu() for k, v in current_mask.items()}),
        artifacts_dir=level_dir(level) / layout.PRUNING,
        previous_artifacts_dir=level_dir(level - 1) / layout.PRUNING if level > 1 else None,
        trained_model=lambda: load(level - 1, end), rewind_model=lambda: load(0, start),
        train=functools.partial(train_search, lottery, level, h.pruning_strategy),
        training_hparams=our_training_hparams(desc.training_hparams), start_step=our_start, end_step=our_end,
        replicate=replicate)
    new_mask = our_cls(to_ours(h, our_cls)).prune(ctx)
    return UpMask({k: new_mask[k].detach().float().cpu() for k in current_mask})


def train_search(lottery: Any, level: int, strategy_name: str, model: Any, mask: Any, output_dir: Path,
                 make_strategy: Any = None, label: Optional[str] = None) -> Any:
    """Train `model` with the training strategy `make_strategy` makes, from the rewind step to the end
    step, with upstream's loop, loaders, callbacks and checkpoints (resumable); a finished search is
    loaded back, not run again."""
    import datasets.registry as up_datasets
    from foundations import paths as up_paths
    from platforms.platform import get_platform
    from training import standard_callbacks
    from training import train as up_train

    from open_lth_concave.foundations import io, layout
    from open_lth_concave.training.strategy import TrainResult
    platform = get_platform()
    model.to(platform.torch_device)
    strategy = make_strategy(model, mask)
    searched = search_model_cls()(model, strategy)
    desc = lottery.desc
    start, end = desc.train_start_step, desc.train_end_step
    output_dir = Path(output_dir)
    end_file = up_paths.model(str(output_dir), end)
    if platform.exists(end_file):
        searched.load_state_dict(platform.load_model(end_file, map_location="cpu"))
        return TrainResult(model, strategy)
    if lottery.verbose and platform.is_primary_process:
        print("-" * 82 + f"\nPruning Level {level}: {strategy_name} mask search\n" + "-" * 82, flush=True)
    train_loader = up_datasets.get(desc.dataset_hparams, train=True)
    test_loader = up_datasets.get(desc.dataset_hparams, train=False)
    callbacks = standard_callbacks.standard_callbacks(
        desc.training_hparams, train_loader, test_loader, start_step=start, verbose=lottery.verbose,
        evaluate_every_epoch=lottery.evaluate_every_epoch)
    began = time.time()
    up_train.train(desc.training_hparams, searched, train_loader, str(output_dir), callbacks, start_step=start)
    io.save_json({"seconds": time.time() - began}, output_dir / layout.TIMING)
    return TrainResult(model, strategy)


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers, so that checkpoints load with torch.load(weights_only=True)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


class _Hooks:
    """The `training_hooks` the edited training loop calls (see hooks.edits) -> our TrainingStrategy."""

    def __init__(self, strategy: Any):
        self.strategy = strategy
        self.epoch: Optional[int] = None

    def param_groups(self) -> list[dict]:
        return self.strategy.param_groups()

    def on_step(self, step: Any, end_step: Any) -> None:
        if step.ep != self.epoch:        # the first training step of an epoch (or of a resumed run)
            self.epoch = int(step.ep)
            self.strategy.on_epoch_start(int(step.ep), int(end_step.ep))

    def before_step(self) -> None:
        self.strategy.before_step()

    def after_step(self) -> None:
        self.strategy.after_step()


@functools.cache
def search_model_cls() -> type:
    from models import base as up_models_base

    class SearchModel(up_models_base.Model):
        """The network under search: our strategy's forward, loss + penalty while training, its hooks and state."""

        def __init__(self, model: Any, strategy: Any):
            super().__init__()
            self.model = model
            self._searched = [strategy]            # a list: not a submodule, its tensors are its own
            self.training_hooks = _Hooks(strategy)

        def forward(self, x):
            return self._searched[0].forward(x)

        @property
        def loss_criterion(self):
            base, strategy = self.model.loss_criterion, self._searched[0]

            def loss(outputs, labels):
                value = base(outputs, labels)
                if self.training:
                    penalty = strategy.penalty()
                    if penalty is not None:
                        value = value + penalty
                return value
            return loss

        @property
        def prunable_layer_names(self):
            return self.model.prunable_layer_names

        @property
        def output_layer_names(self):
            return self.model.output_layer_names

        def get_extra_state(self):
            return _plain(self._searched[0].state_dict())

        def set_extra_state(self, state):
            if state:
                self._searched[0].load_state_dict(state)

        @staticmethod
        def is_valid_model_name(model_name):
            return False

        @staticmethod
        def get_model_from_name(model_name, outputs, initializer):
            raise NotImplementedError

        @staticmethod
        def default_hparams():
            raise NotImplementedError

    return SearchModel

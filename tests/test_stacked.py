"""K replicates trained together (torch.func.vmap over stacked parameters) equal K separate runs."""
import pytest
import torch

from open_lth_concave import results
from open_lth_concave.foundations.hparams import DatasetHparams, ModelHparams, TrainingHparams
from open_lth_concave.foundations.step import Step
from open_lth_concave.training.experiment import make_data, make_model
from open_lth_concave.platform import Platform
from open_lth_concave.pruning.mask import Mask
from open_lth_concave.training import loop
from open_lth_concave.training.stacked import train_stacked

PLATFORM = Platform(device="cpu", precision="fp32")   # exact comparison: no bf16 rounding


def _setup(model_name: str, replicates: list[int], training: TrainingHparams):
    dataset = DatasetHparams(dataset_name="digits", batch_size=64)
    model_hp = ModelHparams(model_name=model_name, model_init="kaiming_normal", batchnorm_init="uniform")
    data = [make_data(dataset, training, r, PLATFORM) for r in replicates]
    models = [make_model(model_hp, d.spec, r) for d, r in zip(data, replicates)]
    return data, models


@pytest.mark.parametrize("model_name,training", [
    ("mnist_lenet_30_20", TrainingHparams(optimizer_name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
                                          milestone_steps="1ep", gamma=0.1, training_steps="2ep")),
    # ResNet (batch norm under vmap): its statistics are reduced in another order (differences ~1e-6),
    # and on these 8x8 images one such difference can flip a ReLU from the second step on (measured with
    # one thread: two entries of one conv off by 1.5e-4 after 2 steps, 4e-6 at most after 1), so ResNet
    # is compared after one step; LeNet (no batch norm) covers momentum and the lr schedule over 2 epochs.
    ("cifar_resnet_8", TrainingHparams(optimizer_name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4,
                                       training_steps="1it")),
])
def test_stacked_replicates_equal_separate_runs(tmp_path, model_name, training):
    replicates = [1, 2, 3]
    data, models = _setup(model_name, replicates, training)
    masks = []
    for k, m in enumerate(models):   # a different fixed ticket per replicate
        mask = Mask.ones_like(m)
        name = next(n for n in mask if mask[n].dim() >= 2)
        mask[name] = (torch.rand(mask[name].shape, generator=torch.Generator().manual_seed(k)) > 0.4).float()
        with torch.no_grad():
            dict(m.named_parameters())[name].mul_(mask[name])
        masks.append(mask)
    initial = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    end = Step.from_str(training.training_steps, data[0].iterations_per_epoch)
    stacked = train_stacked(models, [d.train for d in data], data[0].test, training, end, PLATFORM, masks)

    for k, r in enumerate(replicates):
        model = make_model(ModelHparams(model_name=model_name, model_init="kaiming_normal", batchnorm_init="uniform"),
                           data[k].spec, r)
        model.load_state_dict(initial[k])
        job = loop.TrainJob(output_dir=tmp_path / f"r{r}", model=model, mask=masks[k], train_loader=data[k].train,
                            test_loader=data[k].test, hparams=training, start_step=Step.zero(end.iterations_per_epoch),
                            end_step=end, platform=PLATFORM, quiet=True)
        separate, _ = loop.train(job)
        got, want = stacked.models[k].state_dict(), separate.state_dict()
        for name in want:
            if want[name].is_floating_point():
                torch.testing.assert_close(got[name], want[name].cpu(), rtol=1e-4, atol=1e-4,
                                           msg=lambda m, name=name: f"{name}: {m}")
            else:
                assert torch.equal(got[name], want[name].cpu()), name
        pruned = masks[k][next(n for n in masks[k] if not bool(masks[k][n].all()))]
        weight = dict(stacked.models[k].named_parameters())[next(n for n in masks[k] if not bool(masks[k][n].all()))]
        assert bool((weight[pruned == 0] == 0).all())   # the ticket stays a ticket
        accuracy = results.load_final_metrics(tmp_path / f"r{r}")["test_accuracy"]
        assert stacked.test_accuracy[k] == pytest.approx(accuracy, abs=2 / 360)
    assert len(set(round(a, 6) for a in stacked.test_accuracy)) > 1 or model_name.startswith("cifar")


def test_bad_arguments_are_clear():
    training = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="1ep")
    data, models = _setup("mnist_lenet_30_20", [1, 2], training)
    with pytest.raises(ValueError, match="one train loader"):
        train_stacked(models, [data[0].train], data[0].test, training, Step(1, 1), PLATFORM)


def test_cli_replicates_together_writes_each_replicate_where_a_separate_run_would(tmp_path, capsys):
    from open_lth_concave import cli
    from open_lth_concave.foundations import io
    common = ["train", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--quiet", "--precision=fp32"]
    assert cli.main(common + ["--replicates_together=3", "--replicate=2", "--root", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("Replicate")] == \
        ["Replicate 2", "Replicate 3", "Replicate 4"]
    mains = {r: next((tmp_path / "a").glob(f"train_*/replicate_{r}/main")) for r in (2, 3, 4)}
    finished = {r: (m / "model_ep2_it0.pth").stat().st_mtime_ns for r, m in mains.items()}
    assert not list((tmp_path / "a").rglob("stacked_checkpoint_*.pth"))   # removed once finished
    # a later ordinary run of replicate 3 finds it finished and does not train again
    assert cli.main(common + ["--replicate=3", "--root", str(tmp_path / "a")]) == 0
    assert (mains[3] / "model_ep2_it0.pth").stat().st_mtime_ns == finished[3]
    # each equals the separately trained replicate (fp32; float rounding only)
    for r in (2, 4):
        assert cli.main(common + [f"--replicate={r}", "--root", str(tmp_path / "b")]) == 0
        sep = next((tmp_path / "b").glob(f"train_*/replicate_{r}/main"))
        a, b = io.load_torch(mains[r] / "model_ep2_it0.pth"), io.load_torch(sep / "model_ep2_it0.pth")
        for k in b:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4)
        assert torch.equal(io.load_torch(mains[r] / "model_ep0_it0.pth")["fc.weight"],
                           io.load_torch(sep / "model_ep0_it0.pth")["fc.weight"])


@pytest.mark.parametrize("flags,message", [
    (["--replicates_together=0"], "invalid --replicates_together 0"),
    (["--replicates_together=2", "--training_strategy=soft_mask"], "standard strategy only"),
])
def test_cli_replicates_together_bad_input(tmp_path, capsys, flags, message):
    from open_lth_concave import cli
    code = cli.main(["train", "--default_hparams=digits_lenet_300_100", "--root", str(tmp_path), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


class _Interrupt(RuntimeError):
    """Stands for a crash of the process."""


class _StopAfter:
    """A loader that raises after `n` batches in total: a crash in the middle of an epoch."""

    def __init__(self, inner, n):
        self.inner, self.n, self.count = inner, n, 0
        self.iterations_per_epoch = inner.iterations_per_epoch

    def batches(self, epoch, start_iteration=0):
        for batch in self.inner.batches(epoch, start_iteration):
            if self.count == self.n:
                raise _Interrupt()
            self.count += 1
            yield batch


def test_interrupted_stacked_run_resumes_from_its_epoch_checkpoint(tmp_path):
    training = TrainingHparams(optimizer_name="sgd", lr=0.1, momentum=0.9, training_steps="3ep")
    data, models = _setup("mnist_lenet_30_20", [1, 2], training)
    ipe = data[0].iterations_per_epoch
    end = Step.from_str("3ep", ipe)
    initial = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    checkpoint = tmp_path / "stacked.pth"
    loaders = [_StopAfter(data[0].train, ipe + ipe // 2), data[1].train]   # crash mid-way through epoch 2
    with pytest.raises(_Interrupt):
        train_stacked(models, loaders, data[0].test, training, end, PLATFORM, checkpoint=checkpoint)
    assert checkpoint.exists()
    for m, state in zip(models, initial):   # a restarted process starts from fresh models
        m.load_state_dict(state)
    resumed = train_stacked(models, [d.train for d in data], data[0].test, training, end, PLATFORM,
                            checkpoint=checkpoint)
    assert not checkpoint.exists()
    for m, state in zip(models, initial):
        m.load_state_dict(state)
    straight = train_stacked(models, [d.train for d in data], data[0].test, training, end, PLATFORM)
    for a, b in zip(resumed.models, straight.models):
        for k, v in b.state_dict().items():
            assert torch.equal(a.state_dict()[k], v), k


class _NanFrom:
    """A loader whose images become NaN from batch `n` on (counted across epochs): a diverging replicate."""

    def __init__(self, inner, n):
        self.inner, self.n, self.count = inner, n, 0
        self.iterations_per_epoch = inner.iterations_per_epoch

    def batches(self, epoch, start_iteration=0):
        for x, y in self.inner.batches(epoch, start_iteration):
            self.count += 1
            yield (x * float("nan") if self.count > self.n else x), y


def test_nan_stops_a_stacked_run_as_it_stops_a_single_run(tmp_path):
    """Replicate 2 turns NaN in epoch 2 of 3: the single run of it and the stacked run of replicates 1 and 2
    both stop at the next check (the epoch-3 boundary) with the loop's error, keep the checkpoint of the
    last good epoch boundary and return no model."""
    training = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="3ep")
    data, models = _setup("mnist_lenet_30_20", [1, 2], training)
    ipe = data[0].iterations_per_epoch
    end = Step.from_str("3ep", ipe)
    initial = {k: v.clone() for k, v in models[1].state_dict().items()}
    single = make_model(ModelHparams(model_name="mnist_lenet_30_20", model_init="kaiming_normal",
                                     batchnorm_init="uniform"), data[1].spec, 2)
    single.load_state_dict(initial)
    job = loop.TrainJob(output_dir=tmp_path / "single", model=single, mask=Mask.ones_like(single),
                        train_loader=_NanFrom(data[1].train, ipe + 3), test_loader=data[1].test, hparams=training,
                        start_step=Step.zero(ipe), end_step=end, platform=PLATFORM, quiet=True)
    with pytest.raises(loop.TrainingDiverged) as one:
        loop.train(job)
    checkpoint = tmp_path / "stacked.pth"
    with pytest.raises(loop.TrainingDiverged) as stacked:
        train_stacked(models, [data[0].train, _NanFrom(data[1].train, ipe + 3)], data[0].test, training, end,
                      PLATFORM, checkpoint=checkpoint)
    said = str(stacked.value).split(": ", 1)[1]
    assert said == str(one.value).split(": ", 1)[1], (str(stacked.value), str(one.value))
    assert said.startswith(f"the training loss became nan by epoch 2 iteration 0 (step {Step(2 * ipe, ipe)})")
    assert not (tmp_path / "single" / "model_ep3_it0.pth").exists()     # nothing saved as final
    from open_lth_concave.foundations import io
    assert io.load_torch(tmp_path / "single" / "checkpoint.pth")["iteration"] == ipe
    assert io.load_torch(checkpoint)["iteration"] == ipe                  # the last good epoch boundary


def test_cli_nan_in_replicates_together_stops_with_exit_1_and_no_final_model(tmp_path, capsys):
    from open_lth_concave import cli
    argv = ["train", "--default_hparams=digits_lenet_300_100", "--training_steps=2ep", "--quiet", "--precision=fp32",
            "--lr=1e30", "--root", str(tmp_path)]
    assert cli.main(argv + ["--replicates_together=2"]) == 1
    err = capsys.readouterr().err
    assert "the training loss became" in err and "nothing was saved as final" in err, err
    mains = sorted(tmp_path.glob("train_*/replicate_*/main"))
    assert len(mains) == 2 and not any((m / "model_ep2_it0.pth").exists() for m in mains)
    assert cli.main(argv) == 1                                            # a single run stops the same way
    assert "the training loss became" in capsys.readouterr().err
    assert not (mains[0] / "model_ep2_it0.pth").exists()

"""The CUDA path: bf16 autocast, channels_last, fused SGD, compilation. Skipped without a GPU."""
import json

import pytest
import torch

from open_lth_concave import cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("extra", [[], ["--compile"], ["--precision=fp32"]])
@pytest.mark.parametrize("strategy", ["sparse_global", "concave_log"])
def test_lottery_on_cuda(root, extra, strategy):
    assert cli.main(["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=3ep", "--levels=1",
                     "--device=cuda", f"--pruning_strategy={strategy}", "--quiet", "--root", str(root), *extra]) == 0
    (rep,) = list(root.glob("lottery_*/replicate_1"))
    levels = json.loads((rep / "report.json").read_text())["levels"]
    assert levels[0]["test_accuracy"] > 0.85 and levels[1]["remaining"] < 1.0


def test_resnet_step_on_cuda_bf16(root):
    assert cli.main(["train", "--default_hparams=cifar_resnet_8", "--dataset_name=digits", "--training_steps=2it",
                     "--device=cuda", "--quiet", "--root", str(root)]) == 0


def test_soft_mask_gradients_on_cuda_match_cpu():
    """The masked-weight Function and the analytic penalty gradient give the CPU's numbers on CUDA."""
    import torch.nn.functional as F

    import open_lth_concave.concave  # noqa: F401
    from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
    from open_lth_concave.models.lenet import LeNet
    from open_lth_concave.pruning.mask import Mask

    grads = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = LeNet(64, [30, 20], 10).to(device)
        s = SoftMask(model, Mask.ones_like(model), SoftMaskHparams(regularization_lambda=1e-2,
                                                                   pruning_layers_to_ignore="fc.weight"))
        x = torch.randn(16, 64, generator=torch.Generator().manual_seed(1)).to(device)
        y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(2)).to(device)
        F.cross_entropy(s.forward(x), y).backward()
        s.before_step()
        grads[device] = s.variable.grad.cpu()
    torch.testing.assert_close(grads["cuda"], grads["cpu"], rtol=1e-4, atol=1e-6)


def test_stacked_replicates_on_cuda(root):
    from open_lth_concave.foundations.hparams import DatasetHparams, ModelHparams, TrainingHparams
    from open_lth_concave.foundations.step import Step
    from open_lth_concave.training.experiment import make_data, make_model
    from open_lth_concave.platform import Platform
    from open_lth_concave.training.stacked import train_stacked

    platform = Platform(device="cuda")
    training = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="3ep")
    dataset = DatasetHparams(dataset_name="digits", batch_size=64)
    data = [make_data(dataset, training, r, platform) for r in (1, 2, 3, 4)]
    models = [make_model(ModelHparams(model_name="mnist_lenet_300_100", model_init="kaiming_normal",
                                      batchnorm_init="uniform"), d.spec, r) for d, r in zip(data, (1, 2, 3, 4))]
    end = Step.from_str("3ep", data[0].iterations_per_epoch)
    result = train_stacked(models, [d.train for d in data], data[0].test, training, end, platform)
    assert len(result.models) == 4 and min(result.test_accuracy) > 0.85


@pytest.mark.subprocess
def test_speed_benchmark_runs_on_cuda(tmp_path):
    import subprocess
    import sys

    from conftest import REPO
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "speed.py"), "--quick", "--steps", "3", "--warmup", "1",
                           "--reps", "1", "--device", "cuda", "--json", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bf16 autocast" in proc.stdout and "| ResNet-20 / CIFAR-shaped (crop+flip) | soft_mask |" in proc.stdout

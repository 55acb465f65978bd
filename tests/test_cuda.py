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

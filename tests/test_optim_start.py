"""Start-up cut of #17: torch.optim without importing torch._dynamo, with the same updates."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from open_lth_concave.platform import optim_start

from conftest import REPO


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_train_command_does_not_import_dynamo(tmp_path):
    """torch._dynamo's import was 3.5 s of a 12 s 10-epoch MNIST-10k `train` (bench/whole_command.py)."""
    code = ("import sys; from open_lth_concave import cli; "
            f"rc = cli.main(['train', '--default_hparams=digits_lenet_300_100', '--training_steps=2ep', '--quiet', "
            f"'--threads=1', '--root={tmp_path}']); print(rc, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stdout + out.stderr


@pytest.mark.parametrize("make", [
    lambda ps, fused: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4, fused=fused),
    lambda ps, fused: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, fused=fused),
    lambda ps, fused: torch.optim.SGD(ps, lr=0.1, fused=fused),
    lambda ps, fused: torch.optim.Adam(ps, lr=1e-3, weight_decay=1e-4, fused=fused),
])
@pytest.mark.parametrize("fused", [False, True])
def test_step_is_the_optimizers_own_update(make, fused):
    """Bit for bit the parameters and state of optimizer.step() (runs in this test process, where dynamo
    may be loaded already by other tests; then both sides are optimizer.step(), so it is also checked
    in the subprocess below)."""
    _compare(make, fused)


def _compare(make, fused) -> bool:
    """Compares the two; True when torch._dynamo was not loaded while the `step` side ran."""
    import sys
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(4)]
    sides = []
    without_dynamo = False
    for use_raw in (True, False):   # ours first: optimizer.step() imports dynamo
        params = [p.clone().requires_grad_(True) for p in start]
        opt = make([{"params": params[:1]}, {"params": params[1:], "lr": 0.02}], fused)
        for i in range(3):
            g = torch.Generator().manual_seed(i)
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            if use_raw:
                optim_start.step(opt)
            else:
                opt.step()
        sides.append((params, opt.state_dict()))
        if use_raw:
            without_dynamo = "torch._dynamo" not in sys.modules
    (a, sa), (b, sb) = sides
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["state"][k][name])), name
    return without_dynamo


@pytest.mark.subprocess
@pytest.mark.slow
def test_step_equals_optimizer_step_in_a_process_without_dynamo():
    code = ("import sys; sys.path.insert(0, 'tests'); import torch; "
            "from open_lth_concave.platform import optim_start; optim_start.skip_dynamo_import(); "
            "import test_optim_start as t; "
            "print(t._compare(lambda ps, f: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4, fused=f), True))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "True", out.stdout + out.stderr

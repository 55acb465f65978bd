"""Platform defaults: what `auto` picks, the allocator switch, and open_lth's --apex_fp16."""
import contextlib

import pytest
import torch

from open_lth_concave.foundations.hparams import HparamError, TrainingHparams
from open_lth_concave.platform import Platform, allocator, cpu_has_native_bf16
from open_lth_concave.training.loop import autocast_dtype


def test_auto_precision_on_cpu_follows_the_hardware():
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert Platform(device="cpu").autocast_dtype is expected
    assert Platform(device="cpu", precision="fp32").autocast_dtype is None
    assert Platform(device="cpu", precision="bf16").autocast_dtype is torch.bfloat16


def test_apex_fp16_forces_reduced_precision():
    hp = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="1ep", apex_fp16=True)
    assert autocast_dtype(Platform(device="cpu", precision="fp32"), hp) is torch.bfloat16
    plain = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="1ep")
    assert autocast_dtype(Platform(device="cpu", precision="fp32"), plain) is None


def test_memory_format_and_fused_optimizer_defaults():
    assert Platform(device="cpu").channels_last and not Platform(device="cpu", memory_format="contiguous").channels_last
    assert Platform(device="cpu").fused_optimizer


@pytest.mark.skipif(allocator._libc() is None, reason="needs glibc's mallopt (Linux with glibc)")
def test_allocator_switch_applies_on_linux():
    try:
        assert allocator.keep_freed_blocks() is True
    finally:
        assert allocator.system_defaults() is True


def test_bad_allocator_value_is_a_clear_error():
    with pytest.raises(HparamError, match="cpu_allocator"):
        Platform.from_dict({"cpu_allocator": "jemalloc"})


@pytest.mark.slow
def test_compiled_soft_mask_search_on_cpu_matches_eager(tmp_path):
    """--compile (inductor on CPU here, the same path CUDA takes) runs the soft-mask search end to end."""
    import json

    from open_lth_concave import cli
    levels = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        root = tmp_path / name
        assert cli.main(["lottery", "--default_hparams=digits_lenet_300_100", "--levels=1", "--training_steps=1ep",
                         "--pruning_strategy=concave_log", "--mask_optimizer=scaled", "--quiet", "--root", str(root), *extra]) == 0
        (rep,) = list(root.glob("lottery_*/replicate_1"))
        levels[name] = json.loads((rep / "report.json").read_text())["levels"]
    eager, compiled = levels["eager"][1], levels["compiled"][1]
    assert compiled["remaining"] < 1.0
    assert abs(compiled["remaining"] - eager["remaining"]) < 0.01
    assert abs(compiled["test_accuracy"] - eager["test_accuracy"]) < 0.02


@pytest.mark.slow
def test_compiled_conv_soft_mask_step_matches_eager_with_channels_last():
    """The CUDA default (channels_last conv weights) under --compile: the flat mask's per-layer views
    must be ones torch.compile can trace (view + permute, not as_strided)."""
    import torch.nn.functional as F

    import open_lth_concave.concave  # noqa: F401
    from open_lth_concave.concave.soft_mask import SoftMask, SoftMaskHparams
    from open_lth_concave.foundations.hparams import ModelHparams
    from open_lth_concave.models import get_model
    from open_lth_concave.pruning.mask import Mask

    grads = {}
    for compiled in (False, True):
        model = get_model(ModelHparams(model_name="cifar_resnet_8", model_init="kaiming_normal",
                                       batchnorm_init="uniform"), (3, 8, 8), 10, torch.Generator().manual_seed(0))
        model = model.to(memory_format=torch.channels_last)
        s = SoftMask(model, Mask.ones_like(model), SoftMaskHparams(pruning_layers_to_ignore="fc.weight"))
        forward = torch.compile(s.forward) if compiled else s.forward
        x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(2))
        F.cross_entropy(forward(x), y).backward()
        s.before_step()
        grads[compiled] = (s.variable.grad.clone(), {n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(grads[True][0], grads[False][0], rtol=1e-3, atol=1e-5)
    for n, g in grads[False][1].items():
        torch.testing.assert_close(grads[True][1][n], g, rtol=1e-3, atol=1e-5)


def _meta(name: str):
    from open_lth_concave.models import registry as models
    with torch.device("meta"):
        return models.get(name).build((3, 32, 32), 10)


def test_channels_last_hazard_names_the_narrow_strided_1x1_convolution():
    from open_lth_concave.platform import channels_last_hazard
    hazard = channels_last_hazard(_meta("cifar_resnet_8_4"))
    assert hazard is not None and hazard.startswith("blocks.1.shortcut.0: a 1x1 stride-2 convolution of 4 channels")
    for safe in ("cifar_resnet_8_8", "cifar_resnet_20", "mnist_lenet_300_100", "cifar_vgg_11"):
        assert channels_last_hazard(_meta(safe)) is None, safe


def test_auto_memory_format_avoids_the_hazard_and_an_explicit_choice_is_kept_with_a_warning(capsys):
    auto = Platform(device="cpu")
    auto.choose_memory_format(_meta("cifar_resnet_8_4"))
    assert not auto.channels_last and "contiguous (auto: blocks.1.shortcut.0" in auto.summary()
    fine = Platform(device="cpu")
    fine.choose_memory_format(_meta("cifar_resnet_8_8"))
    assert fine.channels_last and "channels_last" in fine.summary()
    explicit = Platform(device="cpu", memory_format="channels_last")
    explicit.choose_memory_format(_meta("cifar_resnet_8_4"))
    assert explicit.channels_last
    assert "warning: --memory_format=channels_last on the CPU with blocks.1.shortcut.0" in capsys.readouterr().err


@pytest.mark.subprocess
def test_a_narrow_resnet_trains_on_the_cpu_with_the_default_platform(tmp_path):
    """torch 2.13's CPU backward crashed the whole process here (heap corruption) on cifar_resnet_8_4 in
    channels_last: the run must finish with the defaults."""
    from conftest import run_cli
    result = run_cli("train", "--default_hparams=digits_lenet_300_100", "--model_name=cifar_resnet_8_4",
                     "--training_steps=1ep", "--device=cpu", root=tmp_path / "results")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "contiguous (auto: blocks.1.shortcut.0" in result.stdout


@pytest.mark.parametrize("capability,expected", [((7, 0), None), ((6, 1), None), ((8, 0), torch.bfloat16),
                                                  ((9, 0), torch.bfloat16)])
def test_auto_precision_on_a_gpu_follows_its_compute_capability(monkeypatch, capability, expected):
    """bf16 autocast only where the GPU has bf16 arithmetic (Ampere, 8.0, and later); a V100 (7.0) or the
    paper's TITAN Xp (6.1) would emulate it, so auto stays fp32 there."""
    monkeypatch.setattr(Platform, "torch_device", property(lambda self: torch.device("cuda", 0)))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert Platform(precision="auto").autocast_dtype == expected
    assert Platform(precision="bf16").autocast_dtype == torch.bfloat16


def test_a_numbered_gpu_under_torchrun_is_refused(monkeypatch):
    """--device=cuda:N would put every torchrun process on that one GPU."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(HparamError, match=r"invalid --device cuda:1 under torchrun \(2 processes\)"):
        Platform(device="cuda:1").validate()
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(HparamError, match="CUDA is not available") if not torch.cuda.is_available() else \
            contextlib.nullcontext():
        Platform(device="cuda:1").validate()


def test_the_thread_choice_bounds_a_model_before_any_forward_pass(monkeypatch):
    """A fully connected model's count is exact from its parameters, a convolution's bounded by the input's
    full spatial size; a model whose bound is small gets 1 thread without the (slow) meta forward pass."""
    from open_lth_concave.models import registry as models
    from open_lth_concave.platform import threads
    with torch.device("meta"):
        lenet = models.get("mnist_lenet_300_100").build((1, 28, 28), 10)
        resnet = models.get("cifar_resnet_20").build((3, 32, 32), 10)
    assert threads.forward_macs_bound(lenet, (1, 28, 28)) == threads.forward_macs(lenet, (1, 28, 28)) == 266_200
    assert threads.forward_macs_bound(resnet, (3, 32, 32)) >= threads.forward_macs(resnet, (3, 32, 32)) > 4e7
    monkeypatch.setattr(threads, "forward_macs", lambda *a: pytest.fail("no forward pass for a small model"))
    assert threads.choose_for_model(lenet, (1, 28, 28), 128) == threads.ThreadChoice(1, "small model")

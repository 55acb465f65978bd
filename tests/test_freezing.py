"""open_lth's freezing flags: frozen tensors get no update (not even weight decay) and keep their
initial values; everything else trains."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from open_lth_concave import cli
from open_lth_concave.foundations import io
from open_lth_concave.pruning.mask import Mask

# ResNet-8 on the 8x8 digits: conv, batch-norm and output tensors, a few seconds on a CPU
RESNET = ["--default_hparams=digits_lenet_300_100", "--model_name=cifar_resnet_8", "--training_steps=4it",
          "--weight_decay=0.01", "--quiet"]


def _roles(model: nn.Module) -> dict[str, str]:
    """Each parameter's role, found from the module types (not from the code under test)."""
    roles = {}
    for prefix, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{prefix}.{name}" if prefix else name
            roles[full] = "batchnorm" if isinstance(module, nn.BatchNorm2d) else "other"
    for name in ("fc.weight", "fc.bias"):
        roles[name] = "output"
    return roles


def _train(root, *flags):
    assert cli.main(["train", *RESNET, "--root", str(root), *flags]) == 0
    (main,) = root.glob("train_*/replicate_1/main")
    return io.load_torch(main / "model_ep0_it0.pth"), io.load_torch(main / "model_ep0_it4.pth")


def _resnet8_roles() -> dict[str, str]:
    from open_lth_concave.models import registry
    return _roles(registry.get("cifar_resnet_8").build((1, 8, 8), 10))


@pytest.mark.parametrize("flags, frozen_roles, exception", [
    (["--batchnorm_frozen"], {"batchnorm"}, None),
    (["--output_frozen"], {"output"}, None),
    (["--others_frozen"], {"other"}, None),
    (["--others_frozen", "--others_frozen_exceptions=conv.weight"], {"other"}, "conv.weight"),
    (["--batchnorm_frozen", "--output_frozen"], {"batchnorm", "output"}, None),
])
def test_frozen_tensors_keep_their_initial_values_and_the_rest_trains(root, flags, frozen_roles, exception):
    roles = _resnet8_roles()
    assert {"batchnorm", "output", "other"} == set(roles.values()) and len(roles) > 20
    start, end = _train(root, *flags)
    frozen = {n for n, role in roles.items() if role in frozen_roles and n != exception}
    assert frozen and frozen < set(roles)
    for name in roles:
        if name in frozen:
            assert torch.equal(end[name], start[name]), name
        else:
            assert not torch.equal(end[name], start[name]), name
    assert any(not torch.equal(end[n], start[n]) for n in end if n.endswith("running_mean"))  # buffers still update


def test_without_freezing_every_tensor_trains(root):
    start, end = _train(root)
    changed = [n for n in _resnet8_roles() if not torch.equal(end[n], start[n])]
    assert changed == list(_resnet8_roles())


def test_frozen_weights_stay_fixed_through_a_lottery_and_a_concave_search(root):
    """The tickets and the soft-mask search build their models through the same path: with
    --others_frozen only the output layer (and the search's mask) moves."""
    argv = ["lottery", "--default_hparams=digits_lenet_300_100", "--training_steps=1ep", "--quiet", "--levels=1",
            "--pruning_strategy=concave_l1", "--others_frozen", "--root", str(root)]
    assert cli.main(argv) == 0
    (rep,) = root.glob("lottery_*/replicate_1")
    init = io.load_torch(rep / "level_0" / "main" / "model_ep0_it0.pth")
    mask = Mask.load(rep / "level_1" / "main" / "mask.pth")
    relaxed = io.load_torch(rep / "level_1" / "pruning" / "relaxed_mask.pth")["fc_layers.0.weight"]
    assert float(relaxed.std()) > 1e-3                                          # the search trained its mask
    for run in ("level_0/main", "level_1/pruning/search", "level_1/main"):
        end = io.load_torch(rep / run / "model_ep1_it0.pth")
        for name in ("fc_layers.0.weight", "fc_layers.0.bias", "fc_layers.1.weight", "fc_layers.1.bias"):
            expected = init[name] * mask[name] if run == "level_1/main" and name in mask else init[name]
            assert torch.equal(end[name], expected), (run, name)
        assert not torch.equal(end["fc.weight"], init["fc.weight"]), run


@pytest.mark.parametrize("flags, needle", [
    (["--others_frozen_exceptions=conv.weight"], "which is not given"),
    (["--others_frozen", "--others_frozen_exceptions=conv.weight,nope.weight"], "nope.weight: not a parameter"),
    (["--others_frozen", "--batchnorm_frozen", "--output_frozen"], "freeze every parameter"),
])
def test_bad_freezing_flags_are_one_line_exit_2_before_anything_is_written(root, capsys, flags, needle):
    assert cli.main(["train", *RESNET, "--root", str(root), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not root.exists() or not any(root.rglob("*"))

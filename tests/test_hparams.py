import argparse
import re
from dataclasses import dataclass
from typing import Optional

import pytest

from open_lth_concave.foundations.errors import UserError
from open_lth_concave.foundations.hparams import (DatasetHparams, HparamError, Hparams, ModelHparams,
                                                  TrainingHparams, hp, replace)
from open_lth_concave.foundations.desc import LotteryDesc, TrainingDesc, hash_of
from open_lth_concave.pruning.sparse_global import SparseGlobalHparams

import open_lth_concave.training.strategy  # noqa: F401  (training strategy registry)


def contract_desc(**training) -> LotteryDesc:
    return LotteryDesc(DatasetHparams(dataset_name="cifar10", batch_size=128),
                       ModelHparams(model_name="cifar_resnet_20", model_init="kaiming_normal", batchnorm_init="uniform"),
                       TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="160ep", **training),
                       SparseGlobalHparams(pruning_strategy="sparse_global"))


def test_hash_matches_open_lth_contract_example():
    assert contract_desc().hashname == "lottery_da8fd50859ba6d59aceca9d50ebcbf7e"


def test_canonical_text_omits_defaults_and_formats_values():
    t = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="160ep", weight_decay=1e-4, momentum=0.0)
    assert t.canonical() == "Hparams(lr=0.1, optimizer_name='sgd', training_steps='160ep', weight_decay=0.0001)"


def test_non_default_value_changes_hash_and_default_value_does_not():
    base = contract_desc().hashname
    assert contract_desc(momentum=0.9).hashname != base
    assert contract_desc(momentum=0.0, training_strategy="standard").hashname == base


def test_adding_a_defaulted_hyperparameter_keeps_old_names():
    @dataclass(kw_only=True)
    class Extended(TrainingHparams):
        brand_new_knob: float = hp(0.5, "a knob added in a later version")
    old = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="160ep")
    new = Extended(optimizer_name="sgd", lr=0.1, training_steps="160ep")
    assert hash_of([old]) == hash_of([new])
    assert hash_of([old]) != hash_of([Extended(optimizer_name="sgd", lr=0.1, training_steps="160ep", brand_new_knob=1.0)])


def test_train_desc_hashes_three_groups_in_name_order():
    d = TrainingDesc(DatasetHparams(dataset_name="digits", batch_size=32),
                     ModelHparams(model_name="digits_lenet_300_100", model_init="kaiming_normal", batchnorm_init="uniform"),
                     TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="2ep"))
    expected = hash_of([d.dataset_hparams, d.model_hparams, d.training_hparams])
    assert d.hashname == f"train_{expected}"


def test_flags_round_trip_through_argparse():
    parser = argparse.ArgumentParser()
    TrainingHparams.add_args(parser, {"optimizer_name": "sgd", "lr": 0.1})
    args = parser.parse_args(["--training_steps", "3ep", "--momentum", "0.9", "--milestone_steps", "1ep,2ep",
                              "--gamma", "0.1", "--apex_fp16"])
    t = TrainingHparams.from_args(args, {"optimizer_name": "sgd", "lr": 0.1})
    assert t == TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="3ep", momentum=0.9,
                                milestone_steps="1ep,2ep", gamma=0.1, apex_fp16=True)
    assert TrainingHparams.from_dict(t.to_dict()) == t


def test_help_shows_required_default_and_optional_tags():
    parser = argparse.ArgumentParser()
    TrainingHparams.add_args(parser, {"lr": 0.25})
    text = parser.format_help()
    assert "(required: str)" in text and "(default: 0.25)" in text and "(optional: float)" in text


@pytest.mark.parametrize("field,value,needle", [
    ("lr", "0", "invalid --lr 0.0: must be > 0"), ("lr", "-1", "invalid --lr -1.0: must be > 0"), ("lr", "abc", "--lr"), ("lr", "nan", "--lr"),
    ("training_steps", "12", "malformed step"), ("training_steps", "", "malformed step"),
    ("optimizer_name", "rmsprop", "allowed: sgd, adam"), ("weight_decay", "-0.1", "invalid --weight_decay -0.1: must be >= 0"),
    ("milestone_steps", "1ep,x", "malformed step"),
])
def test_bad_training_values_name_the_value(field, value, needle):
    values = {"optimizer_name": "sgd", "lr": 0.1, "training_steps": "1ep", field: value}
    with pytest.raises(Exception) as e:
        TrainingHparams.from_dict(values)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("command", [["train"], ["lottery", "--levels=1"], ["lottery", "--levels=1", "--pretrain"]])
def test_an_unknown_training_strategy_is_refused_with_the_registered_names(command):
    """The hyperparameter classes stand on the ground floor and know no registry; the job resolves the name
    once the plug-ins have loaded: one line naming the value and every registered training strategy."""
    from open_lth_concave.jobs.build import describe
    from open_lth_concave.plugins import load_core, load_plugins
    load_core()
    load_plugins()
    flag = "--pretrain_training_strategy=nope" if "--pretrain" in command else "--training_strategy=nope"
    with pytest.raises(UserError) as e:
        describe(command[0], [*command[1:], "--default_hparams=digits_lenet_300_100", flag])
    from open_lth_concave.training.strategy import registry
    assert "standard" in registry.list()
    assert str(e.value) == f"unknown training strategy 'nope'; valid: {', '.join(registry.list())}"
    assert e.value.exit_code == 2


@pytest.mark.parametrize("batch", [0, -3])
def test_batch_size_must_be_positive(batch):
    with pytest.raises(HparamError, match=rf"^invalid --batch_size {batch}: must be >= 1$"):
        DatasetHparams.from_dict({"dataset_name": "digits", "batch_size": batch})


def test_unknown_fields_and_missing_required_are_errors():
    with pytest.raises(HparamError, match="unknown"):
        DatasetHparams.from_dict({"dataset_name": "digits", "batch_size": 3, "bogus": 1})
    with pytest.raises(HparamError, match="--batch_size"):
        DatasetHparams.from_dict({"dataset_name": "digits"})


@pytest.mark.parametrize("value", ["0.2", "1", "0", "1.0"])
def test_pruning_fraction_range(value):
    ok = 0 < float(value) < 1
    if ok:
        assert SparseGlobalHparams.from_dict({"pruning_strategy": "sparse_global", "pruning_fraction": value}).pruning_fraction == 0.2
    else:
        with pytest.raises(HparamError, match=r"--pruning_fraction .* \(0, 1\)"):
            SparseGlobalHparams.from_dict({"pruning_strategy": "sparse_global", "pruning_fraction": value})


# ---- declared ranges: hp(..., range=...) ---------------------------------------------------------

@pytest.mark.parametrize("text,inside,outside,shown", [
    ("(0, 1]", [1e-12, 0.5, 1], [0, -1, 1.0000001, float("nan")], "in (0, 1]"),
    ("(0,1)", [0.5], [0, 1], "in (0, 1)"),
    ("[0, 1)", [0, 0.999], [1, -1e-9], "in [0, 1)"),
    ("[0, inf)", [0, 1e30], [-1e-30, float("nan")], ">= 0"),
    ("> 0", [1e-300], [0, -1], "> 0"),
    (">= 1", [1, 2], [0.999, 0], ">= 1"),
    ("< 1", [0.5, -5], [1, 2], "< 1"),
    ("<= 2.5", [2.5], [2.6], "<= 2.5"),
    ("[1, 1024]", [1, 1024], [0, 1025], "in [1, 1024]"),
    ("(-inf, 0)", [-3], [0], "< 0"),
])
def test_range_syntax_membership_and_display(text, inside, outside, shown):
    from open_lth_concave.foundations.hparams import Range
    r = Range.parse(text)
    assert str(r) == shown
    assert all(v in r for v in inside), [v for v in inside if v not in r]
    assert not any(v in r for v in outside), [v for v in outside if v in r]


@pytest.mark.parametrize("text", ["(1, 0)", "[0, 0]", "[0, inf]", "[-inf, 0)", "0..1", ">= inf", "=> 0", "(0 1]", ""])
def test_malformed_range_fails_at_declaration(text):
    with pytest.raises(ValueError, match="range"):
        hp(0.5, "x", range=text)


@dataclass(kw_only=True)
class _Ranged(Hparams):
    rate: float = hp(0.5, "A rate.", range="(0, 1]")
    count: Optional[int] = hp(None, "A count.", range=">= 2")
    name: str = hp("a", "A name.")


@pytest.mark.parametrize("field,value,message", [
    ("rate", "0", "invalid --rate 0.0: must be in (0, 1]"),
    ("rate", "1.5", "invalid --rate 1.5: must be in (0, 1]"),
    ("rate", "-0.25", "invalid --rate -0.25: must be in (0, 1]"),
    ("count", "1", "invalid --count 1: must be >= 2"),
    ("count", "-7", "invalid --count -7: must be >= 2"),
])
def test_out_of_range_is_one_message_naming_flag_value_and_range(field, value, message):
    with pytest.raises(HparamError) as e:
        _Ranged.from_dict({field: value})
    assert str(e.value) == message
    with pytest.raises(HparamError, match=re.escape(message)):    # the same check for a programmatic replace
        replace(_Ranged(), **{field: _Ranged.coerce(field, value)})


def test_in_range_and_unset_optional_values_pass():
    assert _Ranged.from_dict({"rate": "1", "count": "2"}) == _Ranged(rate=1.0, count=2)
    assert _Ranged.from_dict({"count": "none"}).count is None       # an unset optional field has no range to meet


def test_range_on_a_non_numeric_value_is_a_programming_error():
    @dataclass(kw_only=True)
    class Wrong(Hparams):
        name: str = hp("a", "A name.", range="> 0")
    with pytest.raises(TypeError, match="Wrong.name declares range > 0"):
        Wrong().validate()


def test_help_shows_the_declared_range():
    parser = argparse.ArgumentParser()
    _Ranged.add_args(parser)
    TrainingHparams.add_args(parser, {"lr": 0.25})
    text = " ".join(parser.format_help().split())
    assert "--rate FLOAT A rate. Must be in (0, 1]. (default: 0.5)" in text
    assert "--count INT A count. Must be >= 2. (optional: int)" in text
    assert "--name STR A name. (default: a)" in text
    assert "--lr FLOAT The learning rate. Must be > 0. (default: 0.25)" in text


@pytest.mark.parametrize("flags,message", [
    (["--pretrain_lr=-1"], "invalid --pretrain_lr -1.0: must be > 0"),
    (["--pretrain_momentum=0.5", "--pretrain_nesterov_momentum=0.5"],
     "give --pretrain_momentum or --pretrain_nesterov_momentum, not both"),
    (["--pretrain_training_steps=3x"], "malformed step '3x' for --pretrain_training_steps"),
])
def test_a_prefixed_group_names_its_flags_as_given(flags, message):
    """The pretraining copy of a group is --pretrain_<field> on the command line, and so in its errors."""
    parser = argparse.ArgumentParser()
    defaults = {"optimizer_name": "sgd", "lr": 0.1, "training_steps": "1ep"}
    TrainingHparams.add_args(parser, defaults, prefix="pretrain_")
    with pytest.raises(HparamError) as e:
        TrainingHparams.from_args(parser.parse_args(flags), defaults, prefix="pretrain_")
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("argv,message", [
    (["lottery", "--levels=1001"], "invalid --levels 1001: must be in [0, 1000]"),
    (["lottery", "--levels=1", "--replicate=0"], "invalid --replicate 0: must be >= 1"),
    (["train", "--replicates_together=1025"], "invalid --replicates_together 1025: must be in [1, 1024]"),
    (["compare", "--strategies=sparse_global", "--replicates=0"], "invalid --replicates 0: must be in [1, 1000]"),
])
def test_job_flag_ranges_use_the_one_message(argv, message, tmp_path, capsys):
    from open_lth_concave import cli
    root = tmp_path / "results"
    assert cli.main([*argv, "--default_hparams=digits_lenet_300_100", f"--root={root}", "--threads=1"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")
    assert not root.exists()

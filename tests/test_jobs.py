"""The job-building API (jobs/): a subcommand's command line made into its job, as the command line, `compare`
and the tests use it. No training here: jobs are built and described, not run."""
from __future__ import annotations

import pytest

from open_lth_concave import jobs
from open_lth_concave.foundations.hparams import HparamError
from open_lth_concave.plugins import load_core, load_plugins

D = ["--default_hparams=digits_lenet_300_100", "--training_steps=1ep", "--threads=1", "--quiet", "--levels=1"]


@pytest.fixture(autouse=True)
def registries():
    load_core()
    load_plugins()


def test_describe_names_the_experiment_that_build_runs_and_writes_nothing(root):
    desc = jobs.describe("lottery", D)
    assert desc.hashname.startswith("lottery_") and not root.exists()
    job = jobs.build("lottery", [*D, "--replicate=2"])
    assert isinstance(job, jobs.LotteryJob) and job.desc.hashname == desc.hashname
    assert job.output_dirs() == [root / desc.hashname / "replicate_2"] == [job.runner.replicate_dir]
    assert not (root / desc.hashname).exists()


def test_rewinding_is_a_pretraining_run_on_the_same_data_and_schedule(root):
    rewind = jobs.describe("lottery", [*D, "--rewinding_steps=3it"])
    pretrain = jobs.describe("lottery", [*D, "--pretrain", "--pretrain_training_steps=3it"])
    assert rewind.pretrain_training_hparams.training_steps == "3it" and rewind.rewinds_in_place
    assert rewind.pretrain_dataset_hparams == rewind.dataset_hparams
    assert rewind.hashname == pretrain.hashname
    assert rewind == jobs.rewinding_as_pretraining(jobs.describe("lottery", D), "3it")
    # zero steps: no rewinding, the plain experiment (open_lth's rule)
    assert jobs.describe("lottery", [*D, "--rewinding_steps=0it"]).hashname == jobs.describe("lottery", D).hashname
    assert jobs.describe("lottery", D).pretrain_training_hparams is None


def test_train_builds_one_runner_per_replicate(root):
    job = jobs.build("train", [a for a in D if a != "--levels=1"] + ["--replicate=3", "--replicates_together=2"])
    assert isinstance(job, jobs.TrainJob) and job.replicates == [3, 4]
    assert [p.name for p in job.output_dirs()] == ["main", "main"]
    assert [p.parent.name for p in job.output_dirs()] == ["replicate_3", "replicate_4"]
    with pytest.raises(HparamError, match="invalid --replicates_together 0"):
        jobs.build("train", [a for a in D if a != "--levels=1"] + ["--replicates_together=0"])


def test_a_branch_job_needs_a_trunk_on_disk(root):
    with pytest.raises(HparamError, match="no lottery trunk at"):
        jobs.build("lottery_branch", ["retrain", *D[:-1], "--levels=0"])
    with pytest.raises(HparamError, match="missing required flag --levels"):
        jobs.build("lottery_branch", ["retrain", *D[:-1]])
    assert not root.exists()


def test_bad_flags_are_one_line_user_errors_naming_them():
    with pytest.raises(jobs.UsageError, match="unrecognized arguments: --no_such_flag=1"):
        jobs.describe("lottery", [*D, "--no_such_flag=1"])
    with pytest.raises(HparamError, match="--rewinding_steps and --pretrain cannot be used together"):
        jobs.describe("lottery", [*D, "--pretrain", "--rewinding_steps=2it"])


def test_compare_runs_exactly_the_lottery_job_of_each_strategy():
    from open_lth_concave.jobs.compare import parse_entries, strategy_argvs
    entries = parse_entries("sparse_global,concave_log:pruning_mode=threshold,concave_log:pruning_mode=target")
    argvs, dropped = strategy_argvs([*D, "--pruning_fraction=0.3", "--threshold", "0.1"], entries)
    # --threshold is concave_log's only; --pruning_fraction does nothing in concave_log's threshold mode
    assert dropped == [["--threshold"], ["--pruning_fraction"], []]
    same = [[*D, "--pruning_strategy=sparse_global", "--pruning_fraction=0.3"],
            [*D, "--pruning_strategy=concave_log", "--pruning_mode=threshold", "--threshold=0.1"],
            [*D, "--pruning_strategy=concave_log", "--pruning_mode=target", "--pruning_fraction=0.3", "--threshold=0.1"]]
    assert [jobs.describe("lottery", argv).hashname for argv in argvs] == \
        [jobs.describe("lottery", argv).hashname for argv in same]
    assert len({jobs.describe("lottery", argv).hashname for argv in argvs}) == 3


NAMED = [(["train"], "--model_name=vgg_nope", "model"),
         (["train"], "--dataset_name=mnits", "dataset"),
         (["train"], "--model_init=kaiming", "model initializer"),
         (["train"], "--batchnorm_init=ones", "batchnorm initializer"),
         (["train"], "--training_strategy=soft", "training strateg"),
         (["lottery", "--levels=1"], "--pruning_strategy=sparse", "pruning strateg"),
         (["lottery", "--levels=1", "--pretrain"], "--pretrain_dataset_name=mnits", "dataset"),
         (["lottery", "--levels=1", "--pretrain"], "--pretrain_training_strategy=soft", "training strateg")]


@pytest.mark.parametrize("command,flag,kind", NAMED, ids=[f for _, f, _ in NAMED])
def test_every_registered_name_is_resolved_in_one_place_and_fails_with_the_valid_names(command, flag, kind, root):
    """jobs.check_names looks up each registered name a description holds; a wrong one is refused with the list."""
    argv = ["--default_hparams=digits_lenet_300_100", "--quiet", *command[1:], flag]
    with pytest.raises(Exception, match=rf"(unknown|invalid) ({kind})") as caught:
        jobs.describe(command[0], argv)
    assert "valid" in str(caught.value) or "invalid" in str(caught.value)
    assert not root.exists()
    good = jobs.describe(command[0], ["--default_hparams=digits_lenet_300_100", "--quiet", *command[1:]])
    jobs.check_names(good)   # the defaults resolve

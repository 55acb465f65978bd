"""Property-based fuzzing of the command line: every case runs or exits 2 with one line, and a
failing case writes nothing. Training itself is replaced by the runner's set-up (data loading and
step validation), so hundreds of cases run in seconds."""
import io as stdio
import contextlib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from open_lth_concave import cli
from open_lth_concave.lottery.runner import LotteryRunner
from open_lth_concave.training.runner import TrainingRunner

FLAGS = {
    "--lr": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["", "abc", "1e999", "-1", "0", "0.1"])),
    "--batch_size": st.one_of(st.integers(-5, 10**12).map(str), st.sampled_from(["", "3.5", "x", "32"])),
    "--training_steps": st.one_of(st.text(max_size=8), st.sampled_from(["1ep", "3it", "1ep2it", "0ep", "99999999999ep", "ep", "1.5ep"])),
    "--rewinding_steps": st.sampled_from(["1it", "2ep", "99ep", "x", "", "0it"]),
    "--pruning_fraction": st.one_of(st.floats(-2, 3).map(repr), st.sampled_from(["", "nan", "0.5"])),
    "--pruning_strategy": st.sampled_from(["sparse_global", "concave_log", "concave_l1", "bogus", "", "concave_"]),
    "--model_name": st.sampled_from(["digits_lenet_300_100", "digits_lenet_20", "cifar_resnet_21", "", "mnist_lenet_0", "cifar_vgg_12"]),
    "--dataset_name": st.sampled_from(["digits", "mnist", "nope", ""]),
    "--optimizer_name": st.sampled_from(["sgd", "adam", "rmsprop", ""]),
    "--momentum": st.sampled_from(["0.9", "-1", "x"]),
    "--milestone_steps": st.sampled_from(["1ep", "1ep,2ep", "x,1ep", ""]),
    "--gamma": st.sampled_from(["0.1", "0", "-1", "q"]),
    "--warmup_steps": st.sampled_from(["2it", "bad"]),
    "--weight_decay": st.sampled_from(["1e-4", "-1e-4", "inf"]),
    "--model_init": st.sampled_from(["kaiming_normal", "zeros!", ""]),
    "--levels": st.sampled_from(["0", "1", "-1", "x", "100000", ""]),
    "--replicate": st.sampled_from(["1", "0", "-3", "a", "2"]),
    "--subsample_fraction": st.sampled_from(["0.5", "0", "2", "x"]),
    "--device": st.sampled_from(["cpu", "auto", "tpu", "cuda:7"]),
    "--precision": st.sampled_from(["fp32", "bf16", "fp8"]),
    "--cpu_allocator": st.sampled_from(["tuned", "system", "jemalloc"]),
    "--memory_format": st.sampled_from(["contiguous", "channels_last", "nhwc"]),
    "--regularization_lambda": st.sampled_from(["1e-6", "-1", "x"]),
    "--threshold": st.sampled_from(["0.05", "0", "1", "2"]),
    "--epsilon": st.sampled_from(["0.1", "0", "-0.5"]),
    "--initial_mask_value": st.sampled_from(["0.5", "0", "1", "1.5"]),
    "--unknown_flag": st.sampled_from(["1"]),
}


@pytest.fixture(autouse=True)
def setup_only(monkeypatch, tmp_path):
    monkeypatch.setattr(LotteryRunner, "run", lambda self: self.setup())
    monkeypatch.setattr(TrainingRunner, "run", lambda self: {"test_accuracy": 0.0})
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "datasets_that_do_not_exist"))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=st.sampled_from(["lottery", "train"]),
       chosen=st.dictionaries(st.sampled_from(sorted(FLAGS)), st.just(None), max_size=5),
       data=st.data())
@pytest.mark.slow
def test_cli_fuzz(command, chosen, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "results"
    argv = [command, "--default_hparams=digits_lenet_300_100", "--root", str(root)]
    if command == "lottery":
        argv.append("--levels=1")
    for flag in chosen:
        argv.append(f"{flag}={data.draw(FLAGS[flag], label=flag)}")
    out, err = stdio.StringIO(), stdio.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse's own exit (e.g. --help); never expected here
            code = e.code
    message = err.getvalue().strip()
    assert "Traceback" not in message
    assert code in (0, 2), (argv, code, message)
    if code == 2:
        assert len(message.splitlines()) == 1 and message.startswith("open_lth"), (argv, message)
        assert not root.exists(), argv

import pytest
from hypothesis import given, strategies as st

from open_lth_concave.foundations.hparams import HparamError
from open_lth_concave.foundations.step import Step, StepError


@pytest.mark.parametrize("text,iteration", [("160ep", 160 * 10), ("500it", 500), ("2ep100it", 2 * 10 + 100),
                                            ("0ep", 0), ("0it", 0), ("0ep0it", 0), ("3ep7it", 37)])
def test_parse(text, iteration):
    assert Step.from_str(text, 10).iteration == iteration


@pytest.mark.parametrize("text", ["", "ep", "it", "10", "1.5ep", "-1ep", "2it3ep", "3 ep", "ep3", "1e3it", "2epit", "x"])
def test_malformed_steps_are_rejected_with_the_value(text):
    with pytest.raises(HparamError) as e:
        Step.from_str(text, 10)
    assert repr(text) in str(e.value) and "ep" in str(e.value)


def test_epoch_and_iteration_split_and_filename():
    s = Step.from_str("2ep100it", 30)  # 160 iterations = 5 epochs + 10
    assert (s.ep, s.it, s.iteration) == (5, 10, 160)
    assert s.ep_it_str == "ep5_it10"


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 1000))
def test_arithmetic_and_order(a, b, ipe):
    x, y = Step(a, ipe), Step(b, ipe)
    assert (x + y).iteration == a + b
    assert (x < y) == (a < b)
    assert (x == y) == (a == b)
    if a >= b:
        assert (x - y).iteration == a - b
    assert Step.from_epoch(x.ep, x.it, ipe) == x


def test_steps_of_different_epoch_lengths_do_not_mix():
    with pytest.raises(StepError):
        Step(5, 10) < Step(5, 11)
    with pytest.raises(StepError):
        Step(5, 10) + Step(5, 11)

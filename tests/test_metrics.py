import math

import numpy as np
import pytest

from rnacli.evaluate.metrics import (
    accuracy,
    accuracy_stderr,
    matched_gain,
    matched_gain_interval,
    recovery_interval,
    recovery_rate,
    reduction_rate,
)


def test_paper_worked_example():
    # Appendix A.3: base 60, RMU 30, RMU w/ RNA 50 -> reduction 50 %, recovery 66.67 %.
    assert reduction_rate(60, 30) == pytest.approx(0.5)
    assert recovery_rate(60, 30, 50) == pytest.approx(2 / 3)
    assert 100 * recovery_rate(0.60, 0.30, 0.50) == pytest.approx(66.67, abs=0.005)


def test_recovery_undefined_without_a_drop():
    assert math.isnan(recovery_rate(0.5, 0.5, 0.6))
    assert math.isnan(reduction_rate(0.0, 0.0))


def test_stderr_is_sample_std_over_sqrt_n():
    correct = [True, False, True, True, False, True, False]
    arr = np.array(correct, dtype=float)
    assert accuracy(correct) == pytest.approx(arr.mean())
    assert accuracy_stderr(correct) == pytest.approx(arr.std(ddof=1) / math.sqrt(len(arr)))


def test_recovery_interval_is_exact_when_every_draw_agrees():
    base = [True] * 20
    wrong = [[False] * 20] * 3
    # RNA back at the base on every question: each draw recovers 100 %; RNA = plain: 0 %.
    assert recovery_interval(base, wrong, [base] * 3) == (1.0, 1.0, 0.0)
    assert recovery_interval(base, wrong, wrong) == (0.0, 0.0, 0.0)


def test_recovery_interval_brackets_the_point_estimate():
    base = [True] * 40
    plain = [[False] * 20 + [True] * 20] * 3  # 50 %
    rna = [[False] * 10 + [True] * 30] * 3  # 75 %: recovery (75 - 50) / (100 - 50) = 0.5
    low, high, undefined = recovery_interval(base, plain, rna, draws=500)
    assert low < 0.5 < high
    assert high - low < 0.6
    assert undefined == 0.0
    # Seeds that disagree widen it: one RNA seed recovers everything, one nothing.
    spread = recovery_interval(base, plain, [base, plain[0], rna[0]], draws=500)
    assert spread[1] - spread[0] > high - low


def test_recovery_interval_without_a_drop_is_undefined():
    same = [[True, False, True]] * 2
    low, high, undefined = recovery_interval([True, False, True], same, same, draws=50)
    assert math.isnan(low) and math.isnan(high) and undefined == 1.0
    with pytest.raises(ValueError, match="seeds, questions"):
        recovery_interval([True, False], same, same)


def test_matched_gain_compares_with_the_best_plain_run_that_forgets_as_much():
    # plain at 3 step counts: forget 0.6 -> mention 0.8, 0.4 -> 0.6, 0.2 -> 0.3 (given unsorted)
    forget, mention = [0.4, 0.6, 0.2], [0.6, 0.8, 0.3]
    # RNA at forget 0.3: only the plain run at 0.2 forgets as much; it scored 0.3
    assert matched_gain(forget, mention, 0.3, 0.55) == pytest.approx(0.25)
    # at 0.6 all three qualify, the best scored 0.8
    assert matched_gain(forget, mention, 0.6, 0.8) == pytest.approx(0.0)
    assert matched_gain(forget, mention, 0.4, 0.5) == pytest.approx(-0.1)
    assert math.isnan(matched_gain(forget, mention, 0.1, 0.9))  # forgets more than any plain run
    # a curve flat in forgetting (RMU past chance): the least fragile plain run counts
    assert matched_gain([0.29, 0.28, 0.29], [0.66, 0.52, 0.44], 0.29, 0.75) == pytest.approx(0.09)


def test_matched_gain_interval_is_exact_when_every_draw_agrees():
    # plain curve: (forget all right, task all right) and (forget all wrong, task all wrong);
    # every question answered alike, so every resample of seeds and questions draws the same.
    seeds, n = 3, 10
    right, wrong = np.ones((seeds, n), bool), np.zeros((seeds, n), bool)
    curve_forget = [right, wrong]
    curve_task = [right, wrong]
    # forgetting as complete as the second plain point, task as good as the first: gain +1
    assert matched_gain_interval(curve_forget, curve_task, wrong, right) == (1.0, 1.0, 0.0)
    assert matched_gain_interval(curve_forget, curve_task, wrong, wrong) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="expected curve"):
        matched_gain_interval(right, curve_task, wrong, right)


def test_matched_gain_interval_carries_question_noise():
    rng = np.random.default_rng(1)
    seeds, n = 4, 60
    curve_forget = [rng.random((seeds, n)) < p for p in (0.8, 0.5, 0.2)]
    curve_task = [rng.random((seeds, n)) < p for p in (0.9, 0.6, 0.3)]
    point_forget = rng.random((seeds, n)) < 0.5
    point_task = rng.random((seeds, n)) < 0.8
    low, high, undefined = matched_gain_interval(curve_forget, curve_task, point_forget, point_task)
    observed = matched_gain(
        [c.mean() for c in curve_forget],
        [c.mean() for c in curve_task],
        point_forget.mean(),
        point_task.mean(),
    )
    assert low < observed < high and high - low > 0.05 and undefined < 0.05

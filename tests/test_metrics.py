import math

import numpy as np
import pytest

from rnacli.evaluate.metrics import (
    accuracy,
    accuracy_stderr,
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

import math

import numpy as np
import pytest

from rnacli.evaluate.metrics import accuracy, accuracy_stderr, recovery_rate, reduction_rate


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

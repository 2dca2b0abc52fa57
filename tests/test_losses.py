"""Every loss against a value computed by hand for a tiny input."""

import math

import pytest
import torch

from rnacli.data.batches import Seq
from rnacli.methods.po import dpo_loss, npo_loss, sequence_logprob, simnpo_loss
from rnacli.methods.reduce import masked_mse, mean_over
from rnacli.methods.retain import KLRetain, MSERetain, rm_retain_loss
from rnacli.methods.rm import adaptive_rmu_loss, rmu_loss, rsv_loss


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_masked_mse_ignores_padding():
    x = t([[[1.0, 2.0], [100.0, 100.0]]])  # second token is padding
    y = t([[[0.0, 0.0], [0.0, 0.0]]])
    assert masked_mse(x, y, torch.tensor([[1, 0]])).item() == pytest.approx((1 + 4) / 2)
    assert rm_retain_loss(x, y, torch.tensor([[1, 0]])).item() == pytest.approx(2.5)


def test_rmu_loss():
    z = t([[[1.0, 2.0], [3.0, 4.0]]])
    u = t([0.6, 0.8])  # unit norm
    # target c*u = [1.2, 1.6]; only the first token counts
    expected = ((1 - 1.2) ** 2 + (2 - 1.6) ** 2) / 2
    assert rmu_loss(z, u, 2.0, torch.tensor([[1, 0]])).item() == pytest.approx(expected)


def test_adaptive_rmu_scales_by_the_reference_norm_per_token():
    z = t([[[6.0, 9.0], [0.0, 0.0]]])
    z_ref = t([[[3.0, 4.0], [0.0, 1.0]]])  # norms 5 and 1
    u = t([0.6, 0.8])
    # token 1: target 2*5*u = [6, 8] -> (0 + 1)/2; token 2: target 2*1*u = [1.2, 1.6]
    token2 = (1.2**2 + 1.6**2) / 2
    expected = (0.5 + token2) / 2
    got = adaptive_rmu_loss(z, z_ref, u, 2.0, torch.tensor([[1, 1]]))
    assert got.item() == pytest.approx(expected)


def test_rsv_loss_targets_reference_plus_scaled_vector():
    z = t([[[2.0, 1.0]]])
    z_ref = t([[[1.0, 1.0]]])
    eps = t([1.0, 0.0])
    # target [1 + 3, 1] = [4, 1]: ((2-4)^2 + 0)/2 = 2
    assert rsv_loss(z, z_ref, eps, 3.0, torch.tensor([[1]])).item() == pytest.approx(2.0)


def test_sequence_logprob_scores_only_targets():
    # vocab 3; logits at each position chosen so log-softmax is easy to write down
    logits = t([[[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    ids = torch.tensor([[1, 2, 0, 0]])
    target = torch.tensor([[0, 1, 1, 0]])  # prompt token 1, targets 2 and 0, padding last
    # p(2 | pos0) = 1/3; p(0 | pos1) = 2/4; the padded position is never scored
    expected = math.log(1 / 3) + math.log(2 / 4)
    assert sequence_logprob(logits, ids, target).item() == pytest.approx(expected, abs=1e-6)


def test_npo_loss_sign_and_scale():
    beta = 0.1
    got = npo_loss(t([-10.0]), t([-12.0]), beta).item()
    # -(2/beta) log sigmoid(-beta * 2) = 20 * log(1 + e^0.2)
    assert got == pytest.approx(20 * math.log(1 + math.exp(0.2)), rel=1e-6)
    # forgetting more (lower log-prob than the reference) lowers the loss
    assert npo_loss(t([-14.0]), t([-12.0]), beta).item() < got
    # at the reference the loss is (2/beta) log 2
    assert npo_loss(t([-5.0]), t([-5.0]), beta).item() == pytest.approx(20 * math.log(2))


def test_dpo_loss_prefers_refusal_over_forget_text():
    beta = 0.1
    got = dpo_loss(t([-3.0]), t([-4.0]), t([-10.0]), t([-9.0]), beta).item()
    # margin = (−3+4) − (−10+9) = 2; loss = -(2/beta) log sigmoid(0.2)
    assert got == pytest.approx(-20 * math.log(1 / (1 + math.exp(-0.2))), rel=1e-6)


def test_simnpo_length_normalised_without_reference():
    beta, gamma = 0.1, 0.5
    got = simnpo_loss(t([-20.0, -5.0]), torch.tensor([10, 5]), beta, gamma).item()
    # -(beta/|y|) log pi - gamma: 0.2 - 0.5 = -0.3 and 0.1 - 0.5 = -0.4; batch mean
    per = [-20 * math.log(1 / (1 + math.exp(0.3))), -20 * math.log(1 / (1 + math.exp(0.4)))]
    assert got == pytest.approx(sum(per) / 2, rel=1e-6)


class FullLogits:
    """Passes whose logits are given: `token_values` at the real tokens, as Passes does."""

    def __init__(self, logits, ref_logits):
        self.logits, self.ref_logits = logits, ref_logits

    def token_values(self, seq, per_token, noise):
        real = seq.attention_mask.bool()
        return per_token(self.logits[real], self.ref_logits[real])


def seq_of(mask, **totals):
    mask = torch.tensor(mask)
    return Seq(torch.zeros_like(mask), mask, mask, **totals)


def test_kl_retain_direction_and_padding():
    # token 1: ref p = [1/2, 1/2], current q = [1/4, 3/4]; token 2 is padding
    ref = t([[[0.0, 0.0], [0.0, 50.0]]])
    cur = t([[[0.0, math.log(3)], [0.0, -50.0]]])
    seq = seq_of([[1, 0]])
    kl_ref_cur = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert KLRetain().loss(FullLogits(cur, ref), seq).item() == pytest.approx(kl_ref_cur, abs=1e-6)
    kl_cur_ref = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert KLRetain().loss(FullLogits(ref, cur), seq).item() == pytest.approx(kl_cur_ref, abs=1e-6)
    assert kl_ref_cur != pytest.approx(kl_cur_ref)


def test_mse_retain_on_log_probabilities():
    ref = t([[[0.0, 0.0]]])  # log p = [log .5, log .5]
    cur = t([[[0.0, math.log(3)]]])  # log q = [log .25, log .75]
    expected = ((math.log(0.25) - math.log(0.5)) ** 2 + (math.log(0.75) - math.log(0.5)) ** 2) / 2
    got = MSERetain().loss(FullLogits(cur, ref), seq_of([[1]])).item()
    assert got == pytest.approx(expected)


def test_step_totals_make_a_batch_its_share_of_the_step_mean():
    """With the step's counts, a micro-batch's loss is its sum over the step's count: shares of
    micro-batches add up to the mean over the whole step."""
    x = t([[[1.0, 2.0], [3.0, 0.0]]])
    y = torch.zeros_like(x)
    mask = torch.tensor([[1, 1]])
    # sum of squares 1 + 4 + 9 = 14 over 2 tokens x 2 dims; with 5 tokens in the step: 14 / 10
    assert masked_mse(x, y, mask).item() == pytest.approx(14 / 4)
    assert masked_mse(x, y, mask, total=5).item() == pytest.approx(14 / 10)
    assert rm_retain_loss(x, y, mask, 5).item() == pytest.approx(14 / 10)
    assert mean_over(t([1.0, 2.0]), 4).item() == pytest.approx(3 / 4)
    assert npo_loss(t([-5.0]), t([-5.0]), 0.1, rows=2).item() == pytest.approx(10 * math.log(2))
    ref = t([[[0.0, 0.0]]])
    cur = t([[[0.0, math.log(3)]]])
    one = KLRetain().loss(FullLogits(cur, ref), seq_of([[1]])).item()
    share = KLRetain().loss(FullLogits(cur, ref), seq_of([[1]], step_tokens=3)).item()
    assert share == pytest.approx(one / 3)

"""Losses checked against values computed by hand (the arithmetic is in each docstring).

Shared batch of two pairs (summed response log-probs):

    pair 1: pi_c=-10, pi_r=-12, ref_c=-11, ref_r=-11 -> chosen ratio +1, rejected ratio -1, d=+2
    pair 2: pi_c=-5,  pi_r=-4,  ref_c=-5,  ref_r=-5  -> chosen ratio  0, rejected ratio +1, d=-1

With beta=0.5: beta*d = (+1, -0.5).
    -log sigma(1)    = log(1+e^-1)  = 0.3132616875
    -log sigma(-1)   = log(1+e^1)   = 1.3132616875
    -log sigma(-0.5) = log(1+e^0.5) = 0.9740769842
    -log sigma(0.5)  = log(1+e^-0.5)= 0.4740769842
Lengths: chosen (2, 1), rejected (1, 4).
"""

from __future__ import annotations

import math

import pytest
import torch

from aptune.train.losses import PreferenceLoss, SFTLoss, token_mean_nll

PI_C = [-10.0, -5.0]
PI_R = [-12.0, -4.0]
REF_C = [-11.0, -5.0]
REF_R = [-11.0, -5.0]
LEN_C = [2, 1]
LEN_R = [1, 4]


def _run(loss: PreferenceLoss, requires_grad: bool = False):
    pi_c = torch.tensor(PI_C, requires_grad=requires_grad)
    out = loss(
        pi_c,
        torch.tensor(PI_R),
        torch.tensor(REF_C),
        torch.tensor(REF_R),
        chosen_lengths=torch.tensor(LEN_C),
        rejected_lengths=torch.tensor(LEN_R),
    )
    return out, pi_c


def test_sigmoid_dpo_value_and_metrics() -> None:
    """loss = (0.3132616875 + 0.9740769842) / 2 = 0.6436693359.

    rewards chosen = 0.5*(1, 0) = (0.5, 0); rejected = 0.5*(-1, 1) = (-0.5, 0.5);
    margins = (1, -0.5), mean 0.25; accuracy = 1/2.
    """
    out, _ = _run(PreferenceLoss("sigmoid", beta=0.5))
    assert out.loss.item() == pytest.approx(0.6436693359, abs=1e-7)
    assert out.chosen_rewards.tolist() == pytest.approx([0.5, 0.0])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.5, 0.5])
    assert out.margins.tolist() == pytest.approx([1.0, -0.5])
    assert out.accuracy.item() == pytest.approx(0.5)
    m = out.metrics()
    assert m["margin"] == pytest.approx(0.25) and m["reward_acc"] == pytest.approx(0.5)


def test_sigmoid_with_nll_value_and_gradient() -> None:
    """NLL = -(-10 + -5) / (2 + 1) = 5; loss = 0.6436693359 + 0.5 * 5 = 3.1436693359.

    d loss / d pi_c[0] = -beta * sigma(-beta d_0) / B - w / n_tokens
                       = -0.5 * 0.2689414214 / 2 - 0.5 / 3 = -0.0672353553 - 0.1666666667 = -0.2339020220
    d loss / d pi_c[1] = -0.5 * sigma(0.5) / 2 - 0.5 / 3 = -0.5 * 0.6224593312 / 2 - 0.1666666667
                       = -0.1556148328 - 0.1666666667 = -0.3222814995
    """
    out, pi_c = _run(PreferenceLoss("sigmoid", beta=0.5, nll_weight=0.5), requires_grad=True)
    assert out.nll.item() == pytest.approx(5.0)
    assert out.loss.item() == pytest.approx(3.1436693359, abs=1e-7)
    out.loss.backward()
    assert pi_c.grad.tolist() == pytest.approx([-0.2339020220, -0.3222814995], abs=1e-7)


def test_hinge_value() -> None:
    """relu(1 - 1) = 0, relu(1 + 0.5) = 1.5 -> mean 0.75."""
    out, _ = _run(PreferenceLoss("hinge", beta=0.5))
    assert out.loss.item() == pytest.approx(0.75)


def test_ipo_value_is_length_normalised() -> None:
    """Per-token ratios: pair 1: 1/2 - (-1)/1 = 1.5; pair 2: 0/1 - 1/4 = -0.25. 1/(2 beta) = 1.

    (1.5 - 1)^2 = 0.25, (-0.25 - 1)^2 = 1.5625 -> mean 0.90625.
    """
    out, _ = _run(PreferenceLoss("ipo", beta=0.5))
    assert out.loss.item() == pytest.approx(0.90625)


def test_cdpo_label_smoothing_value() -> None:
    """eps = 0.1: pair 1: 0.9*0.3132616875 + 0.1*1.3132616875 = 0.4132616875;
    pair 2: 0.9*0.9740769842 + 0.1*0.4740769842 = 0.9240769842; mean 0.6686693359."""
    out, _ = _run(PreferenceLoss("cdpo", beta=0.5, label_smoothing=0.1))
    assert out.loss.item() == pytest.approx(0.6686693359, abs=1e-7)


def test_robust_value() -> None:
    """eps = 0.1: pair 1: (0.9*0.3132616875 - 0.1*1.3132616875) / 0.8 = 0.1882616875;
    pair 2: (0.9*0.9740769842 - 0.1*0.4740769842) / 0.8 = 1.0365769842; mean 0.6124193359."""
    out, _ = _run(PreferenceLoss("robust", beta=0.5, label_smoothing=0.1))
    assert out.loss.item() == pytest.approx(0.6124193359, abs=1e-7)


def test_robust_and_cdpo_reduce_to_dpo_without_smoothing() -> None:
    """eps = 0 makes both exactly -log sigma(beta d)."""
    dpo = _run(PreferenceLoss("sigmoid", beta=0.5))[0].loss.item()
    for kind in ("robust", "cdpo"):
        assert _run(PreferenceLoss(kind, beta=0.5))[0].loss.item() == pytest.approx(dpo)


def test_dpo_is_log2_when_policy_equals_reference() -> None:
    """pi == ref -> d = 0 -> -log sigma(0) = log 2 for every pair; margins 0, accuracy 0."""
    x = torch.tensor([-3.0, -7.0, -1.5])
    out = PreferenceLoss("sigmoid", beta=0.1)(x, x - 1, x, x - 1)
    assert out.loss.item() == pytest.approx(math.log(2))
    assert out.accuracy.item() == 0.0


def test_sft_and_token_mean_nll() -> None:
    """sum logps (-6, -2), lengths (3, 1): NLL = 8 / 4 = 2 (not the mean of 2 and 2 by accident:
    with lengths (1, 3) it is still 8/4 = 2, while a per-sequence mean would give (6 + 2/3)/2)."""
    s = torch.tensor([-6.0, -2.0])
    assert SFTLoss()(s, torch.tensor([3, 1])).item() == pytest.approx(2.0)
    assert token_mean_nll(s, torch.tensor([1, 3])).item() == pytest.approx(2.0)


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="loss must be one of"):
        PreferenceLoss("dpo-plus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta"):
        PreferenceLoss("sigmoid", beta=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        PreferenceLoss("robust", label_smoothing=0.5)
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="ipo loss needs"):
        PreferenceLoss("ipo")(x, x, x, x)
    with pytest.raises(ValueError, match="NLL term needs"):
        PreferenceLoss("sigmoid", nll_weight=0.5)(x, x, x, x)

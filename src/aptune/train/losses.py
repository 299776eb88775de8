"""Preference (DPO family) and SFT losses on summed response log-probabilities.

Every loss here takes *summed* log-probabilities of each response under the policy and the
reference (prompt tokens excluded) and returns the loss together with the usual DPO metrics,
so the trainer, the TRL parity test and the APT loop all read the same numbers.

Notation (per pair i): ``r_c = beta * (pi_c - ref_c)``, ``r_r = beta * (pi_r - ref_r)`` are the
implicit rewards, ``d = (pi_c - pi_r) - (ref_c - ref_r)`` the log-ratio difference, so
``beta * d = r_c - r_r`` is the reward margin.

Kinds:
- ``sigmoid`` (DPO, Rafailov et al. 2023): ``-log sigma(beta d)``.
- ``ipo`` (Azar et al. 2023): ``(d' - 1/(2 beta))^2`` where d' uses *per-token averaged*
  log-ratios (length-normalised, as the IPO authors and TRL do), so lengths are required.
- ``hinge`` (SLiC): ``max(0, 1 - beta d)``.
- ``robust`` (Chowdhury et al. 2024, unbiased under label noise eps):
  ``[-(1-eps) log sigma(beta d) + eps log sigma(-beta d)] / (1 - 2 eps)``.
- ``cdpo`` (conservative DPO, label smoothing eps): ``-(1-eps) log sigma(beta d) - eps log sigma(-beta d)``.

Reference-free kinds (no reference model, so the trainer skips the reference pass; both work on
*per-token averaged* log-probs ``a_c = pi_c / |c|``, ``a_r = pi_r / |r|``, and their rewards are
``beta * a``, as TRL reports them):
- ``simpo`` (Meng et al. 2024): ``-log sigma(beta (a_c - a_r) - gamma)``, margin ``gamma`` =
  ``simpo_gamma`` (label smoothing as cdpo's, when set).
- ``orpo`` (Hong et al. 2024): ``-beta log sigma(log odds(c) - log odds(r))`` with
  ``log odds(y) = a_y - log(1 - exp(a_y))``; ORPO's own objective adds the chosen NLL with weight
  1 (``nll_weight: 1.0``), beta playing the paper's lambda (0.1 there and in TRL).

The unpaired kind ``kto`` (Ethayarajh et al. 2024) is :class:`KTOLoss`: desirable examples
``1 - sigma(beta (r - z))``, undesirable ``1 - sigma(beta (z - r))``, ``r = pi - ref`` of the
example, ``z = max(0, mean over the batch of (pi - ref) on mismatched completions)`` detached,
weighted by ``desirable_weight`` / ``undesirable_weight`` and averaged over the batch's examples
(as TRL's ``kto`` loss type); its data are built by ``aptune.train.kto``.

Any kind can add ``nll_weight * NLL`` where NLL is the token-mean negative log-likelihood of the
chosen responses over the batch (sum of chosen log-probs / number of chosen tokens). APT's default
is ``sigmoid`` with beta 0.1 and nll_weight 0.5 (DPO + NLL, as in the released APT code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

PairedLossKind = Literal["sigmoid", "ipo", "hinge", "robust", "cdpo", "simpo", "orpo"]
PreferenceLossKind = Literal[PairedLossKind, "kto"]
PAIRED_LOSSES: tuple[str, ...] = get_args(PairedLossKind)
PREFERENCE_LOSSES: tuple[str, ...] = get_args(PreferenceLossKind)
#: the kinds that read no reference log-probs (the trainer skips the reference pass for them)
REFERENCE_FREE: frozenset[str] = frozenset({"simpo", "orpo"})


@dataclass
class PreferenceLossOutput:
    """The scalar loss to backpropagate and per-pair tensors for metrics (detached)."""

    loss: torch.Tensor  # scalar: mean preference loss + nll_weight * nll
    preference_loss: torch.Tensor  # scalar, the preference part alone
    nll: torch.Tensor  # scalar token-mean NLL of the chosen responses (0 when not computed)
    chosen_rewards: torch.Tensor  # (B,) beta * (pi_c - ref_c)
    rejected_rewards: torch.Tensor  # (B,) beta * (pi_r - ref_r)

    @property
    def margins(self) -> torch.Tensor:
        """Reward margins r_c - r_r per pair."""
        return self.chosen_rewards - self.rejected_rewards

    @property
    def accuracy(self) -> torch.Tensor:
        """Share of pairs whose chosen reward exceeds the rejected reward."""
        return (self.chosen_rewards > self.rejected_rewards).float().mean()

    def metrics(self) -> dict[str, float]:
        """Plain floats for logging."""
        return {
            "loss": float(self.loss.detach()),
            "preference_loss": float(self.preference_loss.detach()),
            "nll": float(self.nll.detach()),
            "reward_chosen": float(self.chosen_rewards.mean()),
            "reward_rejected": float(self.rejected_rewards.mean()),
            "margin": float(self.margins.mean()),
            "reward_acc": float(self.accuracy),
        }


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, without cancellation: log(-expm1(x)) near 0, log1p(-exp(x))
    below -log 2 (Mächler's split)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def token_mean_nll(sum_logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Token-mean NLL over a batch: -(sum of all response log-probs) / (number of response tokens).

    Long responses weigh more than short ones (each token counts once), which is what
    ``-per_token_logps[mask].mean()`` computes; TRL's ``sft`` loss term does the same.
    """
    total = lengths.sum().clamp(min=1).to(sum_logps.dtype)
    return -sum_logps.sum() / total


class PreferenceLoss(nn.Module):
    """DPO-family loss with an optional NLL term on the chosen answer."""

    def __init__(
        self,
        kind: PairedLossKind = "sigmoid",
        beta: float = 0.1,
        nll_weight: float = 0.0,
        label_smoothing: float = 0.0,
        simpo_gamma: float = 0.5,
    ) -> None:
        super().__init__()
        if kind == "kto":
            raise ValueError("kto learns from unpaired examples: KTOLoss, trained by train_kto")
        if kind not in PAIRED_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(PAIRED_LOSSES)}, not {kind!r}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0, not {beta}")
        if nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, not {nll_weight}")
        if kind in ("robust", "cdpo", "simpo") and not 0.0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5) for {kind}, not {label_smoothing}")
        self.kind = kind
        self.beta = beta
        self.nll_weight = nll_weight
        self.label_smoothing = label_smoothing
        self.simpo_gamma = simpo_gamma

    @property
    def needs_reference(self) -> bool:
        return self.kind not in REFERENCE_FREE

    def forward(
        self,
        policy_chosen_logps: torch.Tensor,
        policy_rejected_logps: torch.Tensor,
        ref_chosen_logps: torch.Tensor | None,
        ref_rejected_logps: torch.Tensor | None,
        chosen_lengths: torch.Tensor | None = None,
        rejected_lengths: torch.Tensor | None = None,
    ) -> PreferenceLossOutput:
        """Loss over a batch of pairs; all inputs are (B,) summed response log-probs / token counts.

        ``chosen_lengths`` is needed for the NLL term and for IPO, SimPO and ORPO;
        ``rejected_lengths`` for those three. The reference-free kinds ignore the reference
        log-probs (None is fine).
        """
        beta, eps = self.beta, self.label_smoothing
        if not self.needs_reference:
            return self._reference_free(policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths)
        if ref_chosen_logps is None or ref_rejected_logps is None:
            raise ValueError(f"the {self.kind} loss needs reference log-probs")
        chosen_ratio = policy_chosen_logps - ref_chosen_logps
        rejected_ratio = policy_rejected_logps - ref_rejected_logps
        delta = chosen_ratio - rejected_ratio

        if self.kind == "sigmoid":
            per_pair = -F.logsigmoid(beta * delta)
        elif self.kind == "hinge":
            per_pair = torch.relu(1 - beta * delta)
        elif self.kind == "ipo":
            if chosen_lengths is None or rejected_lengths is None:
                raise ValueError("the ipo loss needs chosen_lengths and rejected_lengths")
            avg_delta = chosen_ratio / chosen_lengths.clamp(min=1) - rejected_ratio / rejected_lengths.clamp(min=1)
            per_pair = (avg_delta - 1 / (2 * beta)) ** 2
        elif self.kind == "robust":
            per_pair = (-(1 - eps) * F.logsigmoid(beta * delta) + eps * F.logsigmoid(-beta * delta)) / (1 - 2 * eps)
        else:  # cdpo
            per_pair = -(1 - eps) * F.logsigmoid(beta * delta) - eps * F.logsigmoid(-beta * delta)
        preference = per_pair.mean()

        nll = torch.zeros((), dtype=preference.dtype, device=preference.device)
        if self.nll_weight > 0:
            if chosen_lengths is None:
                raise ValueError("the NLL term needs chosen_lengths")
            nll = token_mean_nll(policy_chosen_logps, chosen_lengths)
        elif chosen_lengths is not None:
            nll = token_mean_nll(policy_chosen_logps.detach(), chosen_lengths)  # logged only
        loss = preference + self.nll_weight * nll if self.nll_weight > 0 else preference

        return PreferenceLossOutput(
            loss=loss,
            preference_loss=preference.detach(),
            nll=nll.detach(),
            chosen_rewards=(beta * chosen_ratio).detach(),
            rejected_rewards=(beta * rejected_ratio).detach(),
        )

    def _reference_free(self, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                        chosen_lengths: torch.Tensor | None, rejected_lengths: torch.Tensor | None) -> PreferenceLossOutput:
        """SimPO and ORPO on per-token averaged log-probs (module docstring)."""
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(f"the {self.kind} loss needs chosen_lengths and rejected_lengths")
        beta, eps = self.beta, self.label_smoothing
        avg_c = policy_chosen / chosen_lengths.clamp(min=1).to(policy_chosen.dtype)
        avg_r = policy_rejected / rejected_lengths.clamp(min=1).to(policy_rejected.dtype)
        if self.kind == "simpo":
            logits = beta * (avg_c - avg_r) - self.simpo_gamma
            per_pair = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
        else:  # orpo: log odds = log p - log(1 - p) with p = exp(avg)
            log_odds = (avg_c - avg_r) - (log1mexp(avg_c) - log1mexp(avg_r))
            per_pair = -beta * F.logsigmoid(log_odds)
        preference = per_pair.mean()
        nll = token_mean_nll(policy_chosen if self.nll_weight > 0 else policy_chosen.detach(), chosen_lengths)
        loss = preference + self.nll_weight * nll if self.nll_weight > 0 else preference
        return PreferenceLossOutput(loss=loss, preference_loss=preference.detach(), nll=nll.detach(),
                                    chosen_rewards=(beta * avg_c).detach(), rejected_rewards=(beta * avg_r).detach())


@dataclass
class KTOLossOutput:
    """KTO's scalar loss, its reference point and per-example rewards (detached)."""

    loss: torch.Tensor  # scalar: mean weighted KTO loss + nll_weight * nll
    preference_loss: torch.Tensor  # scalar, the KTO part alone
    nll: torch.Tensor  # token-mean NLL of the desirable completions (0 when there are none)
    kl: torch.Tensor  # scalar reference point z
    rewards: torch.Tensor  # (B,) beta * (pi - ref)
    desirable: torch.Tensor  # (B,) bool

    def metrics(self) -> dict[str, float]:
        """Plain floats for logging; ``margin`` is mean desirable minus mean undesirable reward
        (TRL's ``rewards/margins``), NaN when the batch lacks one of the two."""
        good, bad = self.rewards[self.desirable], self.rewards[~self.desirable]
        nan = float("nan")
        return {
            "loss": float(self.loss.detach()),
            "preference_loss": float(self.preference_loss),
            "nll": float(self.nll),
            "kl": float(self.kl),
            "reward_chosen": float(good.mean()) if len(good) else nan,
            "reward_rejected": float(bad.mean()) if len(bad) else nan,
            "margin": float(good.mean() - bad.mean()) if len(good) and len(bad) else nan,
        }


class KTOLoss(nn.Module):
    """KTO on unpaired examples (module docstring), with an optional NLL on the desirable ones."""

    def __init__(self, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
                 nll_weight: float = 0.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be > 0, not {beta}")
        if desirable_weight <= 0 or undesirable_weight <= 0:
            raise ValueError(f"KTO weights must be > 0, not {desirable_weight} and {undesirable_weight}")
        if nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, not {nll_weight}")
        self.beta = beta
        self.desirable_weight = desirable_weight
        self.undesirable_weight = undesirable_weight
        self.nll_weight = nll_weight

    needs_reference = True

    def forward(
        self,
        policy_logps: torch.Tensor,
        ref_logps: torch.Tensor,
        policy_kl_logps: torch.Tensor,
        ref_kl_logps: torch.Tensor,
        desirable: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> KTOLossOutput:
        """Loss over a batch of examples; all inputs (B,): summed completion log-probs under the
        policy and the reference, the same for each example's mismatched completion, the labels,
        and (for the NLL term) the completion token counts."""
        desirable = desirable.to(torch.bool)
        z = (policy_kl_logps.detach() - ref_kl_logps).mean().clamp(min=0)
        ratio = policy_logps - ref_logps
        per_example = torch.where(
            desirable,
            self.desirable_weight * (1 - torch.sigmoid(self.beta * (ratio - z))),
            self.undesirable_weight * (1 - torch.sigmoid(self.beta * (z - ratio))),
        )
        preference = per_example.mean()
        nll = torch.zeros((), dtype=preference.dtype, device=preference.device)
        if lengths is not None and bool(desirable.any()):
            chosen = policy_logps[desirable] if self.nll_weight > 0 else policy_logps[desirable].detach()
            nll = token_mean_nll(chosen, lengths[desirable])
        elif self.nll_weight > 0 and lengths is None:
            raise ValueError("the NLL term needs lengths")
        loss = preference + self.nll_weight * nll if self.nll_weight > 0 else preference
        return KTOLossOutput(loss=loss, preference_loss=preference.detach(), nll=nll.detach(), kl=z.detach(),
                             rewards=(self.beta * ratio).detach(), desirable=desirable)


class SFTLoss(nn.Module):
    """Plain supervised fine-tuning: token-mean NLL of the responses."""

    def forward(self, sum_logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scalar loss from (B,) summed response log-probs and (B,) response token counts."""
        return token_mean_nll(sum_logps, lengths)

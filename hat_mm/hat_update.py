"""The HAT update, in one place (Bai et al., ECCV 2022; the contract: docs/hat_update.md).

One training iteration in the adversarial phase, on a batch ``x`` (already normalised and
mixed by the data preprocessor) with targets ``y``:

1. ``p_c = softmax(f(x))`` under ``no_grad`` -- constants.
2. ``delta_0 = 0`` in the normalised input space.
3. for ``k = 0 .. K-1``:
      ``z_k = f(x + delta_k)``                          (a fresh forward: new dropout/drop-path)
      ``CE_k`` = the classifier's own loss of ``z_k`` against ``y`` (soft targets included)
      ``KL_k = 0.5 * mean_b(KL(p_c || p_k) + KL(p_k || p_c))``
      ``L_k = CE_k + w_kl * KL_k``                       if ``k == 0``
      ``L_k = (w_ce * CE_k + w_kl * KL_k) / (K - 1)``    if ``k >= 1``
      backward ``L_k`` -- parameter gradients accumulate over the K passes
      ``delta_{k+1} = clamp(delta_k + alpha * sign(d L_k / d delta_k), -eps, eps)``
4. one optimizer step on the accumulated gradient (done by the caller).

After ``adv_epochs`` the official code runs the same step with ``K = 1`` (clean forward and
KL term kept); ``kl_after_adv=False`` makes that phase a plain classification step instead.

The last ``delta`` update would never be used, so it is not computed: the last pass does not
ask for the input gradient.
"""
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .frequency import high_pass

Tensor = torch.Tensor


@dataclass(frozen=True)
class HATConfig:
    """Hyper-parameters of HAT, with the official defaults.

    Args:
        adv_iters (int): K, forward/backward passes per batch in the adversarial phase.
        adv_eps (float): L-inf bound of the perturbation, in the normalised input space.
        adv_lr (float): sign-gradient step size (alpha).
        adv_kl_weight (float): weight of the symmetric KL term (w_kl).
        adv_ce_weight (float): weight of the classification loss on perturbed inputs (w_ce).
        adv_epochs (int): epochs of the adversarial phase; afterwards K = 1.
        kl_after_adv (bool): after ``adv_epochs`` keep the clean forward and the KL term as
            the official code does (True), or train with the plain classification loss.
        high_pass_radius (float, optional): extension, off by default (None = the official
            update). When set, ``delta`` is projected through the high-pass filter of
            :mod:`hat_mm.frequency` (frequencies farther than this radius from the centre of
            the centred spectrum) before each forward, so only high frequencies are
            perturbed. The L-inf clip applies to ``delta`` before the projection.
    """
    adv_iters: int = 3
    adv_eps: float = 2 / 255
    adv_lr: float = 1 / 255
    adv_kl_weight: float = 0.01
    adv_ce_weight: float = 3.0
    adv_epochs: int = 200
    kl_after_adv: bool = True
    high_pass_radius: Optional[float] = None

    def __post_init__(self):
        def fail(field, value, rule):
            raise ValueError(f'Invalid HAT parameter hat.{field}={value!r}: it must be '
                             f'{rule}. Fix `hat = dict({field}=...)` in the config, or pass '
                             f'--cfg-options hat.{field}=...')

        if isinstance(self.adv_iters, bool) or not isinstance(self.adv_iters, int) \
                or self.adv_iters < 1:
            fail('adv_iters', self.adv_iters, 'an integer >= 1')
        if not _is_real(self.adv_eps) or self.adv_eps < 0:
            fail('adv_eps', self.adv_eps, 'a number >= 0 (official value 2/255)')
        if not _is_real(self.adv_lr) or self.adv_lr <= 0:
            fail('adv_lr', self.adv_lr, 'a number > 0 (official value 1/255)')
        if not _is_real(self.adv_kl_weight) or self.adv_kl_weight < 0:
            fail('adv_kl_weight', self.adv_kl_weight, 'a number >= 0')
        if not _is_real(self.adv_ce_weight) or self.adv_ce_weight < 0:
            fail('adv_ce_weight', self.adv_ce_weight, 'a number >= 0')
        if isinstance(self.adv_epochs, bool) or not isinstance(self.adv_epochs, int) \
                or self.adv_epochs < 0:
            fail('adv_epochs', self.adv_epochs, 'an integer >= 0')
        if not isinstance(self.kl_after_adv, bool):
            fail('kl_after_adv', self.kl_after_adv, 'True or False')
        if self.high_pass_radius is not None and (not _is_real(self.high_pass_radius)
                                                  or self.high_pass_radius < 0):
            fail('high_pass_radius', self.high_pass_radius, 'None or a number >= 0')

    @classmethod
    def from_cfg(cls, cfg: Optional[dict]) -> 'HATConfig':
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f'Unknown HAT parameter hat.{unknown[0]} '
                             f'(all unknown: {unknown}); valid fields are {sorted(known)}.')
        return cls(**cfg)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value == value  # not NaN


def symmetric_kl(p_clean: Tensor, logits: Tensor) -> Tensor:
    """``0.5 * mean_b(KL(p_c || p) + KL(p || p_c))``, KL summed over classes.

    ``p_clean`` is a constant (no gradient); gradients flow through ``logits`` only.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_pc = torch.log(p_clean.clamp_min(torch.finfo(torch.float32).tiny))  # 0*log0 := 0
    kl_c_p = (p_clean * (log_pc - log_p)).sum(-1)
    kl_p_c = (log_p.exp() * (log_p - log_pc)).sum(-1)
    return 0.5 * (kl_c_p + kl_p_c).mean()


def hat_backward(forward: Callable[[Tensor], Tensor],
                 clean_forward: Callable[[Tensor], Tensor],
                 classification_loss: Callable[[Tensor, Tensor], Tensor],
                 inputs: Tensor,
                 backward: Callable[[Tensor, bool], None],
                 hat: HATConfig,
                 num_iters: int,
                 with_kl: bool = True,
                 no_sync: Optional[Callable[[], ContextManager]] = None,
                 logits_of: Callable[[object], Tensor] = lambda out: out,
                 kl_loss: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                 ) -> Tuple[Dict[str, Tensor], List[Tensor]]:
    """Run the K forward/backward passes of HAT; parameter gradients accumulate.

    Args:
        forward: ``x -> output`` in train mode with autograd (through the DDP wrapper when
            distributed, inside the optim wrapper's autocast context).
        clean_forward: ``x -> output`` used under ``no_grad`` for ``p_c`` (the bare module).
        classification_loss: ``(output, x_k) -> CE_k``, the classifier's configured loss
            against the batch's (possibly soft) targets.
        inputs: the preprocessed batch ``x``.
        backward: ``(loss, is_last_pass) -> None``; scales for AMP / gradient accumulation
            and back-propagates. Gradients are never zeroed between passes.
        hat: the hyper-parameters.
        num_iters: K for this iteration (``hat.adv_iters``, or 1 after the adversarial phase).
        with_kl: run the clean forward and add the KL term (False only for the optional plain
            phase after ``adv_epochs``).
        no_sync: context manager factory that suspends the gradient all-reduce (DDP's
            ``no_sync``); used for the first K-1 passes so one all-reduce is done per step.
        logits_of: picks the logits (for the KL term) out of a model output.
        kl_loss: ``(logits, p_c) -> KL_k``, default :func:`symmetric_kl` (the classifiers
            pass their ``SymmetricKLLoss``).

    Returns:
        ``(log_vars, deltas)``: detached loss terms for logging, and the perturbations
        ``delta_1 .. delta_{K-1}`` that were used (for tests and analysis).
    """
    K = int(num_iters)
    if K < 1:
        raise ValueError(f'num_iters must be >= 1, got {K}')
    if K > 1 and not with_kl:
        raise ValueError('the adversarial passes (num_iters > 1) need the KL term')
    if kl_loss is None:
        def kl_loss(logits, p_c):
            return symmetric_kl(p_c, logits)
    eps, alpha = hat.adv_eps, hat.adv_lr
    w_kl, w_ce = hat.adv_kl_weight, hat.adv_ce_weight

    p_clean = None
    if with_kl:
        with torch.no_grad():
            p_clean = F.softmax(logits_of(clean_forward(inputs)).float(), dim=-1)

    delta = torch.zeros_like(inputs)
    deltas: List[Tensor] = []
    ce_terms: List[Tensor] = []
    kl_terms: List[Tensor] = []
    total = inputs.new_zeros((), dtype=torch.float32)
    for k in range(K):
        last = k == K - 1
        need_delta_grad = not last  # the last update of delta is never used
        if need_delta_grad:
            delta.requires_grad_(True)
        sync_ctx = nullcontext() if (last or no_sync is None) else no_sync()
        with sync_ctx:
            x_k = inputs + (delta if hat.high_pass_radius is None or k == 0 else
                            high_pass(delta, hat.high_pass_radius))
            out = forward(x_k)
            ce = classification_loss(out, x_k)
            kl = kl_loss(logits_of(out), p_clean) if with_kl else None
            if k == 0:
                loss = ce + w_kl * kl if with_kl else ce
            else:
                loss = (w_ce * ce + w_kl * kl) / (K - 1)
            backward(loss, last)
        if need_delta_grad:
            grad = torch.nan_to_num(delta.grad, nan=0.0)  # torch.sign(NaN) = 0, kept explicit
            delta = (delta.detach() + alpha * grad.sign()).clamp_(-eps, eps)
            deltas.append(delta)
        total = total + loss.detach().float()
        ce_terms.append(ce.detach().float())
        if with_kl:
            kl_terms.append(kl.detach().float())

    log_vars = {'loss': total, 'loss_ce_clean': ce_terms[0]}
    if with_kl:
        log_vars['loss_kl_clean'] = kl_terms[0]
    if K > 1:
        log_vars['loss_ce_adv'] = torch.stack(ce_terms[1:]).mean()
        log_vars['loss_kl_adv'] = torch.stack(kl_terms[1:]).mean()
    return log_vars, deltas

"""DeiT's distillation loss (Touvron et al., ICML 2021; DeiT's ``losses.py``), as the official
HAT ``train_kd.py`` uses it."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

Tensor = torch.Tensor


@MODELS.register_module()
class DistillationLoss(torch.nn.Module):
    """``(1 - alpha) * base + alpha * D(dist_logits, teacher_logits)``.

    ``base`` is the classifier's own loss of the class-token logits (soft targets of
    mixup/cutmix, label smoothing). Hard distillation: ``D = CE(dist, argmax teacher)``;
    soft: ``D = KL(log_softmax(dist / tau) || log_softmax(teacher / tau), reduction='sum',
    log_target=True) * tau^2 / numel(dist)``; ``'none'``: the base loss alone.

    Args:
        distillation_type (str): ``'hard'``, ``'soft'`` or ``'none'``.
        alpha (float): weight of the distillation term, in [0, 1] (DeiT: 0.5).
        tau (float): temperature of the soft distillation, > 0 (DeiT: 1.0).
    """

    def __init__(self, distillation_type: str = 'hard', alpha: float = 0.5, tau: float = 1.0):
        super().__init__()
        if distillation_type not in ('hard', 'soft', 'none'):
            raise ValueError("distillation_type must be 'hard', 'soft' or 'none', got "
                             f'{distillation_type!r}')
        if not 0 <= alpha <= 1 or tau <= 0:
            raise ValueError(f'DistillationLoss needs 0 <= alpha <= 1 and tau > 0, got '
                             f'alpha={alpha}, tau={tau}')
        self.distillation_type = distillation_type
        self.alpha, self.tau = float(alpha), float(tau)

    def forward(self, base_loss: Tensor, dist_logits: Tensor,
                teacher_logits: Optional[Tensor]) -> Dict[str, Tensor]:
        """Returns ``dict(loss=..., loss_cls_base=..., loss_distill=...)`` (the last two
        unweighted, for logging; only ``loss`` with ``'none'``)."""
        if self.distillation_type == 'none':
            return dict(loss=base_loss)
        dist = dist_logits.float()
        if self.distillation_type == 'hard':
            kd = F.cross_entropy(dist, teacher_logits.argmax(dim=1))
        else:
            T = self.tau
            kd = F.kl_div(F.log_softmax(dist / T, dim=1),
                          F.log_softmax(teacher_logits / T, dim=1), reduction='sum',
                          log_target=True) * (T * T) / dist.numel()
        return dict(loss=base_loss * (1 - self.alpha) + kd * self.alpha,
                    loss_cls_base=base_loss.detach(), loss_distill=kd.detach())

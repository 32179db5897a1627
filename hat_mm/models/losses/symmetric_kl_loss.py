"""The symmetric KL term of the HAT update (docs/hat_update.md)."""
import torch
from mmpretrain.registry import MODELS

from ...hat_update import symmetric_kl


@MODELS.register_module()
class SymmetricKLLoss(torch.nn.Module):
    """``loss_weight * 0.5 * mean_b(KL(p_c || p) + KL(p || p_c))``, KL summed over classes.

    ``p = softmax(logits)``; ``p_c`` (``target``, probabilities) is a constant: gradients
    flow through ``logits`` only. The HAT classifiers build it from ``model.kl_loss``
    (default ``dict(type='SymmetricKLLoss')``) and weight it by ``hat.adv_kl_weight``, so
    ``loss_weight`` stays 1 there.
    """

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * symmetric_kl(target, logits)

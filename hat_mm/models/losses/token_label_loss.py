"""Token labeling's loss (Jiang et al., *All Tokens Matter*, NeurIPS 2021), as the ``tlt``
package computes it for VOLO: ``TokenLabelCrossEntropy`` and, with ``ground_truth=True``,
``TokenLabelGTCrossEntropy`` (VOLO's fine-tuning at higher resolution)."""
from typing import Dict, Optional, Sequence

import torch
from mmpretrain.registry import MODELS
from timm.loss import SoftTargetCrossEntropy

Tensor = torch.Tensor


@MODELS.register_module()
class TokenLabelLoss(torch.nn.Module):
    """``cls_weight * CE(cls, t_cls) + dense_weight * CE(tokens, t_tokens)``, soft-target
    cross-entropies (timm's ``SoftTargetCrossEntropy``) averaged over samples and tokens.

    MixToken: the model swaps the tokens of ``box`` with those of the flipped batch (and
    swaps its token outputs back), so the class-token target is mixed with
    ``lam = 1 - box area / N``. With ``ground_truth=True`` the class-token target is first
    blended with the ground truth: ``t * r + gt * (1 - r)`` with ``r = 0.5`` where their
    arg-maxes agree and ``0.9`` elsewhere.

    Args:
        dense_weight (float): weight of the per-token term (VOLO: 0.5).
        cls_weight (float): weight of the class-token term (1.0).
        ground_truth (bool): ``TokenLabelGTCrossEntropy`` instead.
    """

    def __init__(self, dense_weight: float = 0.5, cls_weight: float = 1.0,
                 ground_truth: bool = False):
        super().__init__()
        self.dense_weight = float(dense_weight)
        self.cls_weight = float(cls_weight)
        self.ground_truth = bool(ground_truth)
        self.soft_ce = SoftTargetCrossEntropy()

    def forward(self, cls_logits: Tensor, token_logits: Tensor, cls_target: Tensor,
                dense_target: Optional[Tensor] = None, gt_target: Optional[Tensor] = None,
                mix_token_box: Sequence[int] = (0, 0, 0, 0)) -> Dict[str, Tensor]:
        """Args: ``cls_logits [B, C]``, ``token_logits [B, N, C]`` (MixToken reversed),
        ``cls_target [B, C]``, ``dense_target [B, N, C]`` (None: ``cls_target`` for every
        token), ``gt_target [B, C]`` (for ``ground_truth``), the MixToken box ``(r1, c1, r2,
        c2)`` on the token grid.

        Returns ``dict(loss=..., loss_tl_cls=..., loss_tl_aux=...)`` (the last two
        unweighted, for logging).
        """
        B, N, C = token_logits.shape
        if dense_target is None:
            dense_target = cls_target[:, None, :].expand(B, N, C)
        elif dense_target.shape != token_logits.shape:
            raise ValueError(f'dense token targets {tuple(dense_target.shape)} do not match '
                             f'the token outputs {tuple(token_logits.shape)}: set the data '
                             "preprocessor's label_size to the side of the token grid "
                             '(img_size // 16 for VOLO).')
        if self.ground_truth:
            if gt_target is None:
                raise ValueError('ground_truth=True needs the ground-truth target')
            agree = (gt_target.argmax(-1) == cls_target.argmax(-1)).to(cls_target.dtype)
            ratio = (0.9 - 0.4 * agree).unsqueeze(-1)
            cls_target = cls_target * ratio + gt_target * (1 - ratio)
        r1, c1, r2, c2 = mix_token_box
        lam = 1.0 - (r2 - r1) * (c2 - c1) / N
        if lam < 1:
            cls_target = lam * cls_target + (1 - lam) * cls_target.flip(0)
        loss_cls = self.soft_ce(cls_logits, cls_target)
        loss_aux = self.soft_ce(token_logits.reshape(-1, C), dense_target.reshape(-1, C))
        return dict(loss=self.cls_weight * loss_cls + self.dense_weight * loss_aux,
                    loss_tl_cls=loss_cls.detach(), loss_tl_aux=loss_aux.detach())

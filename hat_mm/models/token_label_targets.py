"""Token labeling's targets (Jiang et al., *All Tokens Matter*, NeurIPS 2021), as the VOLO
recipe computes them through the ``tlt`` package, and the one random box of the recipe.

- :func:`topk_to_dense` + :func:`dense_token_targets`: the per-image top-k score map is
  scattered into a dense ``[C, H, W]`` map (zero outside the top-k), the training crop is
  cut out with ``roi_align`` (box ``* map size - 0.5``, ``aligned=False``) once at
  ``label_size x label_size`` (one target per output token) and once at ``1 x 1`` (the
  class-token target), and a softmax over the classes turns the pooled logits into
  distributions;
- :func:`rand_box`: the box of CutMix and of VOLO's MixToken, drawn as timm 0.4 and the
  official VOLO code draw it (timm >= 0.9 rounds the lower/right edge up for odd sizes, so
  its ``rand_bbox`` is not used here).

Two deliberate differences from the ``tlt`` code as read (docs/volo_token_labeling_and_
distillation.md): the crop box is given to ``roi_align`` as ``(x0, y0, x1, y1)`` (``tlt``
passes its ``(top, left, height, width)`` in those slots), and smoothing keeps the targets
normalised (``t * (1 - s) + s / C``; ``tlt``'s sum to ``1 + s / C``).
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def topk_to_dense(topk: Tensor, num_classes: int) -> Tensor:
    """``[B, 2, k, H, W]`` (top-k values; indices) -> dense ``[B, C, H, W]``, zero elsewhere."""
    if topk.dim() != 5 or topk.shape[1] != 2:
        raise ValueError(f'expected token-label maps [B, 2, k, H, W], got {tuple(topk.shape)}')
    values = topk[:, 0].float()
    index = topk[:, 1].float().round().long()
    if index.min() < 0 or index.max() >= num_classes:
        raise ValueError(f'token-label class index {int(index.max())} is outside the '
                         f'{num_classes} classes of the model (wrong label data?)')
    B, _, H, W = values.shape
    return values.new_zeros(B, num_classes, H, W).scatter_(1, index, values)


def dense_token_targets(dense: Tensor, boxes: Tensor, flips: Sequence[int],
                        label_size: int) -> Tuple[Tensor, Tensor]:
    """Class-token and per-token target distributions of the training crops.

    Args:
        dense: ``[B, C, H, W]`` dense teacher logits covering the whole image.
        boxes: ``[B, 4]`` crop boxes ``(x0, y0, x1, y1)`` normalised to ``[0, 1]``.
        flips: per sample 0 (none), 1 (horizontal), 2 (vertical), 3 (both) -- applied to the
            crop after it was taken, as the pipeline does.
        label_size: side of the token grid of the model (14 for VOLO at 224).

    Returns:
        ``(cls [B, C], tokens [B, label_size**2, C])``, softmax over classes, tokens row-major.
    """
    from torchvision.ops import roi_align
    B, C, H, W = dense.shape
    boxes = boxes.to(dense)
    scale = boxes.new_tensor([W, H, W, H])
    rois = torch.cat([torch.arange(B, device=dense.device, dtype=dense.dtype)[:, None],
                      boxes * scale - 0.5], dim=1)
    tokens = roi_align(dense, rois, output_size=(label_size, label_size), spatial_scale=1.0,
                       sampling_ratio=-1, aligned=False)
    cls = roi_align(dense, rois, output_size=(1, 1), spatial_scale=1.0, sampling_ratio=-1,
                    aligned=False).flatten(1)
    flipped = []
    for t, code in zip(tokens, flips):
        dims = [d for bit, d in ((1, -1), (2, -2)) if int(code) & bit]
        flipped.append(t.flip(dims) if dims else t)
    tokens = torch.stack(flipped).flatten(2).transpose(1, 2)  # B, N, C
    return F.softmax(cls, dim=-1), F.softmax(tokens, dim=-1)


def smooth(target: Tensor, smoothing: float) -> Tensor:
    """Label smoothing of a distribution: ``t * (1 - s) + s / C``."""
    return target * (1.0 - smoothing) + smoothing / target.shape[-1]


def rand_box(height: int, width: int, lam: float) -> Tuple[int, int, int, int]:
    """A box covering about ``1 - lam`` of a ``height x width`` grid, centred at a uniform
    random position and clipped to the grid: ``(top, bottom, left, right)``, as timm 0.4's
    ``rand_bbox`` (CutMix) and VOLO's ``rand_bbox`` (MixToken) draw it, with numpy's global
    RNG (mmengine seeds it): the row of the centre first, then its column."""
    ratio = np.sqrt(1. - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = np.random.randint(height), np.random.randint(width)
    return (int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height)),
            int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width)))


def stack_token_label_targets(data_samples) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """``(gt [B, C], cls target [B, C], dense target [B, N, C] or None)`` of a batch, as
    :class:`~hat_mm.models.TokenLabelDataPreprocessor` stored them in the samples."""
    s0 = data_samples[0]
    if 'token_label_cls' not in s0:
        raise RuntimeError(
            'the data samples have no token-label targets: the VOLO classifier needs '
            "data_preprocessor=dict(type='mmpretrain.TokenLabelDataPreprocessor', ...)")
    gt = torch.stack([s.gt_score for s in data_samples])
    cls_t = torch.stack([s.token_label_cls for s in data_samples])
    dense = torch.stack([s.token_label_dense for s in data_samples]) \
        if 'token_label_dense' in s0 else None
    return gt, cls_t, dense

"""Token labeling (Jiang et al., *All Tokens Matter: Token Labeling for Training Better Vision
Transformers*, NeurIPS 2021) as the VOLO recipe uses it through the ``tlt`` package.

Pieces, each matching what ``tlt`` / the official VOLO and HAT training scripts do:

- dense targets (:func:`dense_token_targets`): the per-image top-k score map is scattered
  into a dense ``[C, H, W]`` map (zero outside the top-k), the training crop is cut out with
  ``roi_align`` (box ``* map size - 0.5``, ``aligned=False``) once at ``label_size x
  label_size`` (one target per output token) and once at ``1 x 1`` (the class-token
  target), and a softmax over the classes turns the pooled logits into distributions;
- label smoothing ``s`` on all targets, then batch-mode mixup / cutmix with the flipped batch
  as partner (timm's ``Mixup`` in ``mode='batch'``), applied with the same ``lam`` to the
  images, the ground truth, the class-token target and the dense targets
  (``tlt.data.TokenLabelMixup``: the dense targets are mixed with the global ``lam`` also
  under cutmix, as in ``tlt``);
- MixToken (:func:`sample_mix_token_box`): a box on the token grid (after VOLO's patch
  embedding, pooled by 2) whose tokens are swapped with those of the flipped batch; the
  model reverses the swap on its dense outputs, and the class-token target is mixed with
  ``lam = 1 - box area / N``;
- the loss (:func:`token_label_loss`): ``cls_weight * CE(cls, target_cls) + dense_weight *
  CE(aux tokens, dense targets)``, soft-target cross-entropies averaged over samples /
  tokens (``TokenLabelCrossEntropy``; VOLO: ``dense_weight=0.5``, ``cls_weight=1``), with the
  optional ground-truth correction of ``TokenLabelGTCrossEntropy`` (VOLO's fine-tuning at
  higher resolution, ``--ground-truth``).

Two deliberate differences from the ``tlt`` code as read (both documented in the README of
this feature): the crop box is given to ``roi_align`` as ``(x0, y0, x1, y1)`` (``tlt``
stores ``(top, left, height, width)`` and passes it in ``roi_align``'s ``(x1, y1, x2, y2)``
slots, i.e. transposed), and smoothing keeps the targets normalised (``t * (1 - s) + s / C``;
``tlt`` adds ``s / C`` on top of ``t * (1 - s + s / C)``, a total mass of ``1 + s / C``).
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.models import ClsDataPreprocessor
from mmpretrain.registry import MODELS

Tensor = torch.Tensor
FLIP_CODES = {None: 0, 'horizontal': 1, 'vertical': 2, 'diagonal': 3}


# ----------------------------------------------------------------------------- targets
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
    dense = values.new_zeros(B, num_classes, H, W)
    return dense.scatter_(1, index, values)


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
        code = int(code)
        if code & 1:
            t = t.flip(-1)
        if code & 2:
            t = t.flip(-2)
        flipped.append(t)
    tokens = torch.stack(flipped).flatten(2).transpose(1, 2)  # B, N, C
    return F.softmax(cls, dim=-1), F.softmax(tokens, dim=-1)


def smooth(target: Tensor, smoothing: float) -> Tensor:
    """Label smoothing of a distribution: ``t * (1 - s) + s / C``."""
    return target * (1.0 - smoothing) + smoothing / target.shape[-1]


# ----------------------------------------------------------------------------- MixToken
def sample_mix_token_box(grid_h: int, grid_w: int, beta: float = 1.0
                         ) -> Tuple[int, int, int, int]:
    """The MixToken box of the official VOLO code (``rand_bbox`` of ``models/volo.py``).

    ``lam ~ Beta(beta, beta)``; the box covers about ``1 - lam`` of the ``grid_h x grid_w``
    token grid. Returns ``(r1, c1, r2, c2)``: rows ``r1:r2`` and columns ``c1:c2`` (the
    official names are ``bbx1, bby1, bbx2, bby2``). Uses numpy's global RNG, as the official
    code does (mmengine seeds it).
    """
    lam = np.random.beta(beta, beta)
    cut_rat = np.sqrt(1. - lam)
    cut_r = int(grid_h * cut_rat)
    cut_c = int(grid_w * cut_rat)
    cr = np.random.randint(grid_h)
    cc = np.random.randint(grid_w)
    r1 = int(np.clip(cr - cut_r // 2, 0, grid_h))
    c1 = int(np.clip(cc - cut_c // 2, 0, grid_w))
    r2 = int(np.clip(cr + cut_r // 2, 0, grid_h))
    c2 = int(np.clip(cc + cut_c // 2, 0, grid_w))
    return r1, c1, r2, c2


def mix_token_lam(box: Sequence[int], num_tokens: int) -> float:
    r1, c1, r2, c2 = box
    return 1.0 - (r2 - r1) * (c2 - c1) / num_tokens


# ----------------------------------------------------------------------------- loss
def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


def token_label_loss(cls_logits: Tensor, aux_logits: Tensor, box: Sequence[int],
                     cls_target: Tensor, dense_target: Optional[Tensor] = None,
                     gt_target: Optional[Tensor] = None, dense_weight: float = 0.5,
                     cls_weight: float = 1.0, ground_truth: bool = False
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    """``TokenLabelCrossEntropy`` (``ground_truth=True``: ``TokenLabelGTCrossEntropy``).

    Args:
        cls_logits: ``[B, C]`` class-token logits.
        aux_logits: ``[B, N, C]`` token logits (MixToken already reversed by the model).
        box: the MixToken box ``(r1, c1, r2, c2)`` on the token grid (zeros: none).
        cls_target: ``[B, C]`` class-token target (token labeling: the teacher's score of the
            crop; without score maps: the (mixed, smoothed) ground truth).
        dense_target: ``[B, N, C]`` per-token targets; None: ``cls_target`` for every token.
        gt_target: ``[B, C]`` (mixed, smoothed) ground truth, for ``ground_truth=True``.

    Returns:
        ``(loss, loss_cls, loss_aux)``.
    """
    B, N, C = aux_logits.shape
    if dense_target is None:
        dense_target = cls_target[:, None, :].expand(B, N, C)
    elif dense_target.shape != aux_logits.shape:
        raise ValueError(f'dense token targets {tuple(dense_target.shape)} do not match the '
                         f'model\'s token outputs {tuple(aux_logits.shape)}: set the data '
                         'preprocessor\'s label_size to the side of the token grid '
                         '(img_size // 16 for VOLO).')
    if ground_truth:
        if gt_target is None:
            raise ValueError('ground_truth=True needs the ground-truth target')
        agree = (gt_target.argmax(-1) == cls_target.argmax(-1)).to(cls_target.dtype)
        ratio = (0.9 - 0.4 * agree).unsqueeze(-1)
        cls_target = cls_target * ratio + gt_target * (1 - ratio)
    lam = mix_token_lam(box, N)
    if lam < 1:
        cls_target = lam * cls_target + (1 - lam) * cls_target.flip(0)
    loss_cls = soft_cross_entropy(cls_logits, cls_target)
    loss_aux = soft_cross_entropy(aux_logits.reshape(-1, C), dense_target.reshape(-1, C))
    return cls_weight * loss_cls + dense_weight * loss_aux, loss_cls, loss_aux


# ----------------------------------------------------------------------------- preprocessor
@MODELS.register_module()
class TokenLabelDataPreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` that builds the token-labeling targets and mixes the batch.

    In training, for each sample it sets ``gt_score`` (smoothed, mixed ground truth),
    ``token_label_cls`` (``[C]``, the class-token target) and, when the samples carry score
    maps (``LoadTokenLabel`` + ``PackInputs(algorithm_keys=('token_label',
    'token_label_box'))``), ``token_label_dense`` (``[N, C]``). Without score maps it still
    does the mixing and ``token_label_cls = gt_score`` (VOLO without token labels).
    Evaluation is plain ``ClsDataPreprocessor``.

    Mixup/cutmix are timm's ``Mixup`` in batch mode (the flipped batch is the partner), done
    here because the dense targets must follow the images; mmpretrain's ``batch_augments``
    are therefore refused.

    Args:
        num_classes (int): number of classes.
        label_size (int, optional): side of the model's token grid (VOLO: ``img_size // 16``);
            required with score maps.
        mixup_alpha (float): mixup Beta parameter (0: off). Default 0.8 (VOLO/DeiT recipe).
        cutmix_alpha (float): cutmix Beta parameter (0: off). Default 1.0.
        mix_prob (float): probability of mixing a batch. Default 1.0.
        switch_prob (float): probability of cutmix when both are on. Default 0.5.
        label_smoothing (float): smoothing of every target. Default 0.1.
        **kwargs: ``ClsDataPreprocessor`` arguments (mean, std, to_rgb, ...).
    """

    def __init__(self, num_classes: int, label_size: Optional[int] = None,
                 mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, mix_prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, **kwargs):
        if kwargs.get('batch_augments'):
            raise ValueError(
                'TokenLabelDataPreprocessor mixes the batch itself (the dense token labels '
                'must follow the images): use its mixup_alpha / cutmix_alpha instead of '
                'batch_augments / model.train_cfg.augments.')
        kwargs.pop('batch_augments', None)
        kwargs['to_onehot'] = True
        super().__init__(num_classes=num_classes, **kwargs)
        for name, value in (('mixup_alpha', mixup_alpha), ('cutmix_alpha', cutmix_alpha),
                            ('label_smoothing', label_smoothing)):
            if value < 0:
                raise ValueError(f'TokenLabelDataPreprocessor.{name} must be >= 0, got {value}')
        self.label_size = label_size
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.mix_prob = float(mix_prob)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.mix_enabled = True  # may be switched off by a hook (timm's mixup_off_epoch)
        self.last_mix = None  # (lam, cutmix box or None), for tests / logging

    # timm Mixup._params_per_batch
    def _mix_params(self) -> Tuple[float, bool]:
        lam, use_cutmix = 1.0, False
        if not self.mix_enabled or (self.mixup_alpha <= 0 and self.cutmix_alpha <= 0):
            return lam, use_cutmix
        if np.random.rand() < self.mix_prob:
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = np.random.rand() < self.switch_prob
                lam = np.random.beta(self.cutmix_alpha, self.cutmix_alpha) if use_cutmix \
                    else np.random.beta(self.mixup_alpha, self.mixup_alpha)
            elif self.mixup_alpha > 0:
                lam = np.random.beta(self.mixup_alpha, self.mixup_alpha)
            else:
                use_cutmix = True
                lam = np.random.beta(self.cutmix_alpha, self.cutmix_alpha)
        return float(lam), bool(use_cutmix)

    @staticmethod
    def _cutmix_box(h: int, w: int, lam: float) -> Tuple[Tuple[int, int, int, int], float]:
        """timm's ``rand_bbox`` + ``correct_lam``: ``((yl, yh, xl, xh), corrected lam)``."""
        ratio = np.sqrt(1 - lam)
        cut_h, cut_w = int(h * ratio), int(w * ratio)
        cy = np.random.randint(0, h)
        cx = np.random.randint(0, w)
        yl, yh = int(np.clip(cy - cut_h // 2, 0, h)), int(np.clip(cy + cut_h // 2, 0, h))
        xl, xh = int(np.clip(cx - cut_w // 2, 0, w)), int(np.clip(cx + cut_w // 2, 0, w))
        lam = 1. - (yh - yl) * (xh - xl) / float(h * w)
        return (yl, yh, xl, xh), lam

    def _targets(self, samples: List, device) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        C = self.num_classes
        labels = torch.cat([s.gt_label.view(-1)[:1] for s in samples]).to(device)
        gt = smooth(F.one_hot(labels, C).float(), self.label_smoothing)
        if 'token_label' not in samples[0]:
            return gt, gt, None
        if self.label_size is None:
            raise ValueError('the samples carry token-label maps: set '
                             'data_preprocessor.label_size (the token grid side, '
                             'img_size // 16 for VOLO)')
        topk = torch.stack([s.token_label for s in samples]).to(device)
        boxes = torch.stack([torch.as_tensor(np.asarray(s.get('token_label_box',
                                                              (0., 0., 1., 1.))),
                                             dtype=torch.float32) for s in samples])
        flips = []
        for s in samples:
            direction = s.get('flip_direction', None) if s.get('flip', False) else None
            if direction not in FLIP_CODES:
                raise ValueError(f'token labeling supports horizontal/vertical/diagonal '
                                 f'flips, got flip_direction={direction!r}')
            flips.append(FLIP_CODES[direction])
        dense = topk_to_dense(topk, C)
        cls_t, tok_t = dense_token_targets(dense, boxes.to(device), flips, self.label_size)
        return gt, smooth(cls_t, self.label_smoothing), smooth(tok_t, self.label_smoothing)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        if not training:
            return data
        inputs, samples = data['inputs'], data['data_samples']
        gt, cls_t, tok_t = self._targets(samples, inputs.device)

        lam, use_cutmix = self._mix_params()
        box = None
        if lam != 1.0:
            if use_cutmix:
                box, lam = self._cutmix_box(inputs.shape[-2], inputs.shape[-1], lam)
                yl, yh, xl, xh = box
                inputs = inputs.clone()
                inputs[:, :, yl:yh, xl:xh] = inputs.flip(0)[:, :, yl:yh, xl:xh]
            else:
                inputs = inputs * lam + inputs.flip(0) * (1. - lam)
            gt = gt * lam + gt.flip(0) * (1. - lam)
            cls_t = cls_t * lam + cls_t.flip(0) * (1. - lam)
            if tok_t is not None:
                tok_t = tok_t * lam + tok_t.flip(0) * (1. - lam)
        self.last_mix = (lam, box)

        for i, s in enumerate(samples):
            s.set_gt_score(gt[i])
            s.set_field(cls_t[i], 'token_label_cls')
            if tok_t is not None:
                s.set_field(tok_t[i], 'token_label_dense')
        return dict(inputs=inputs, data_samples=samples)


def stack_token_label_targets(data_samples) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """``(gt [B, C], cls target [B, C], dense target [B, N, C] or None)`` of a batch."""
    s0 = data_samples[0]
    if 'token_label_cls' not in s0:
        raise RuntimeError(
            'the data samples have no token-label targets: the VOLO classifier needs '
            "data_preprocessor=dict(type='mmpretrain.TokenLabelDataPreprocessor', ...) "
            '(hat_mm/models/token_labeling.py)')
    gt = torch.stack([s.gt_score for s in data_samples])
    cls_t = torch.stack([s.token_label_cls for s in data_samples])
    dense = torch.stack([s.token_label_dense for s in data_samples]) \
        if 'token_label_dense' in s0 else None
    return gt, cls_t, dense


# ----------------------------------------------------------------------------- teachers
@torch.no_grad()
def dense_logits(model: torch.nn.Module, inputs: Tensor) -> Tensor:
    """Per-location class logits ``[B, C, h, w]`` of a classifier (the teacher of
    ``tools/dataset_converters/make_token_labels.py``), as ``tlt``'s ``generate_label.py``
    does: the classifier applied to every location of the last feature map.

    Supported: models with a ``dense_logits`` method (the VOLO classifiers: the token head
    ``aux_head``), mmpretrain ``ImageClassifier`` with a ViT-family backbone (``out_type``
    switched to ``'featmap'``) or a CNN backbone (+ global pooling neck) and a linear head
    (``LinearClsHead``, ``VisionTransformerClsHead``, ``DeiTClsHead``: mean of both heads),
    and ``TimmClassifier`` (``forward_features`` + ``get_classifier()``).
    """
    if hasattr(model, 'dense_logits'):
        return model.dense_logits(inputs)
    from mmpretrain.models import ImageClassifier, TimmClassifier
    if isinstance(model, ImageClassifier):
        backbone, head = model.backbone, model.head
        if hasattr(backbone, 'out_type'):
            old = backbone.out_type
            backbone.out_type = 'featmap'
            try:
                feat = backbone(inputs)[-1]
            finally:
                backbone.out_type = old
        else:
            feat = backbone(inputs)[-1]
        if isinstance(feat, (tuple, list)):
            feat = feat[-1]
        if feat.dim() != 4:
            raise NotImplementedError(f'{type(backbone).__name__} gives no feature map')
        x = feat.permute(0, 2, 3, 1)  # B, h, w, C
        layers = getattr(head, 'layers', None)
        if layers is not None and hasattr(layers, 'head'):
            if hasattr(layers, 'pre_logits'):
                x = layers.act(layers.pre_logits(x))
            out = layers.head(x)
            if hasattr(layers, 'head_dist'):
                out = (out + layers.head_dist(x)) / 2
        elif isinstance(getattr(head, 'fc', None), torch.nn.Linear):
            out = head.fc(x)
        else:
            raise NotImplementedError(f'dense logits of head {type(head).__name__} are not '
                                      'supported (linear heads only)')
        return out.permute(0, 3, 1, 2)
    if isinstance(model, TimmClassifier):
        m = model.model
        feat = m.forward_features(inputs)
        fc = getattr(m, 'aux_head', None)
        if fc is None:
            fc = m.get_classifier()
        if feat.dim() == 3:
            B, N, C = feat.shape
            side = int(np.floor(np.sqrt(N)))
            feat = feat[:, N - side * side:].reshape(B, side, side, C)
        elif feat.dim() == 4 and feat.shape[1] == getattr(m, 'num_features', -1):
            feat = feat.permute(0, 2, 3, 1)
        if isinstance(fc, torch.nn.Conv2d):
            return fc(feat.permute(0, 3, 1, 2))
        return fc(feat).permute(0, 3, 1, 2)
    raise NotImplementedError(f'dense logits of {type(model).__name__} are not supported')

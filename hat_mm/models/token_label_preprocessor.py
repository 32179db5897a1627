"""The data preprocessor of token labeling: targets of the training crops, then batch-mode
mixup / cutmix of the images and of every target with one ``lam``."""
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from .erasing_preprocessor import EraseAfterMixDataPreprocessor
from .token_label_targets import dense_token_targets, smooth, topk_to_dense

Tensor = torch.Tensor
FLIP_CODES = {None: 0, 'horizontal': 1, 'vertical': 2, 'diagonal': 3}


@MODELS.register_module()
class TokenLabelDataPreprocessor(EraseAfterMixDataPreprocessor):
    """``ClsDataPreprocessor`` that builds the token-labeling targets and mixes the batch.

    In training, each sample gets ``gt_score`` (smoothed, mixed ground truth),
    ``token_label_cls`` (``[C]``, the class-token target) and, when the samples carry score
    maps (``LoadTokenLabel`` + ``PackInputs(algorithm_keys=('token_label',
    'token_label_box'))``), ``token_label_dense`` (``[N, C]``). Without score maps it still
    mixes and sets ``token_label_cls = gt_score`` (VOLO without token labels). Evaluation is
    plain ``ClsDataPreprocessor``.

    Mixup/cutmix are ``tlt``'s ``TokenLabelMixup``: timm's ``Mixup`` in batch mode (its
    parameter draws, the flipped batch as partner:
    :meth:`EraseAfterMixDataPreprocessor.mix_batch`), applied with the same ``lam`` to the
    images, the ground truth, the class-token and the dense targets (the dense targets are
    mixed with the global ``lam`` also under cutmix, as in ``tlt``). It is done here because
    the dense targets must follow the images, so mmpretrain's ``batch_augments`` are refused.
    Random erasing follows the mixing, as in the official loader
    (:class:`EraseAfterMixDataPreprocessor`).

    Args:
        num_classes (int): number of classes.
        label_size (int, optional): side of the model's token grid (VOLO: ``img_size // 16``);
            required with score maps.
        mixup_alpha (float): mixup Beta parameter (0: off). Default 0.8 (VOLO/DeiT recipe).
        cutmix_alpha (float): cutmix Beta parameter (0: off). Default 1.0.
        mix_prob (float): probability of mixing a batch. Default 1.0.
        switch_prob (float): probability of cutmix when both are on. Default 0.5.
        label_smoothing (float): smoothing of every target. Default 0.1.
        **kwargs: ``EraseAfterMixDataPreprocessor`` arguments (erasing, mean, std, to_rgb,
            ...).
    """

    def __init__(self, num_classes: int, label_size: Optional[int] = None,
                 mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, mix_prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, **kwargs):
        if kwargs.pop('batch_augments', None):
            raise ValueError(
                'TokenLabelDataPreprocessor mixes the batch itself (the dense token labels '
                'must follow the images): use its mixup_alpha / cutmix_alpha instead of '
                'batch_augments / model.train_cfg.augments.')
        if label_smoothing < 0:
            raise ValueError(f'TokenLabelDataPreprocessor.label_smoothing must be >= 0, got '
                             f'{label_smoothing}')
        kwargs['to_onehot'] = True
        super().__init__(num_classes=num_classes, mixup_alpha=mixup_alpha,
                         cutmix_alpha=cutmix_alpha, mix_prob=mix_prob, switch_prob=switch_prob,
                         **kwargs)
        self.label_size = label_size
        self.label_smoothing = float(label_smoothing)

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
        cls_t, tok_t = dense_token_targets(topk_to_dense(topk, C), boxes.to(device), flips,
                                           self.label_size)
        return gt, smooth(cls_t, self.label_smoothing), smooth(tok_t, self.label_smoothing)

    def mix(self, data: dict) -> dict:
        inputs, samples = data['inputs'], data['data_samples']
        targets = self._targets(samples, inputs.device)
        if self.mixup.mixup_enabled:
            inputs, targets = self.mix_batch(inputs, list(targets))
        gt, cls_t, tok_t = targets
        for i, s in enumerate(samples):
            s.set_gt_score(gt[i])
            s.set_field(cls_t[i], 'token_label_cls')
            if tok_t is not None:
                s.set_field(tok_t[i], 'token_label_dense')
        return dict(inputs=inputs, data_samples=samples)

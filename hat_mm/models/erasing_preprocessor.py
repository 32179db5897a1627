"""Mixup/cutmix and random erasing where the official loader does them: on the normalised
batch, timm's batch-mode mixing, then the erasing.

The official scripts (HAT's ``train.py`` and ``train_kd.py``, on timm's and ``tlt``'s loaders
with the default prefetcher) mix the batch as it is collated, with timm's batch-mode mixup /
cutmix (``--mixup 0.8 --cutmix 1.0 --mixup-prob 1.0 --mixup-switch-prob 0.5 --mixup-mode
batch``): one ``lam`` and one choice of mixup or cutmix per batch, each image mixed with its
partner in the *reversed* batch (image ``i`` with image ``B - 1 - i``), the mixup images
rounded back to uint8 levels, the cutmix ``lam`` corrected to the box's area, the one-hot
targets mixed with the same ``lam``. Then they
normalise the batch on the GPU and run timm's ``RandomErasing`` there: each image is erased
with probability ``--reprob`` 0.25, in one rectangle of 2% to 1/3 of its area and aspect 0.3
to 3.3, filled (``--remode pixel``) with N(0, 1) noise per pixel and channel in the normalised
space. mmpretrain's recipes mix with ``batch_augments`` (a random permutation as partner, so
about one image in ``B`` is paired with itself) and erase in the data pipeline, before the
mixing (so the erased block gets blended with the partner image), on uint8 pixels (so the
noise is clipped).

:class:`EraseAfterMixDataPreprocessor` is ``ClsDataPreprocessor`` (normalisation) followed in
training by timm's mixing (``mixup_alpha`` / ``cutmix_alpha``; its parameter draws, the
reversed batch as partner; mixup images of uint8 batches rounded to whole pixel levels, which
equals the official rounding except where float error lands a value on the other side of a
half level; the targets become ``gt_score``) and timm's own ``RandomErasing``
on the normalised, mixed batch. The paper configs give it the official settings. Label
smoothing stays in the head's loss (smoothing is linear, so smoothing the mixed targets equals
mixing the smoothed ones, as timm does). Subclasses with more targets to mix
(``TokenLabelDataPreprocessor``) override :meth:`mix` and use :meth:`mix_batch`.
"""
import inspect
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models import ClsDataPreprocessor
from mmpretrain.registry import MODELS
from timm.data import Mixup
from timm.data.random_erasing import RandomErasing

from .token_label_targets import rand_box

Tensor = torch.Tensor


def build_erasing(erasing: Optional[dict]) -> Optional[RandomErasing]:
    """timm's ``RandomErasing`` from ``erasing`` (its arguments; ``None`` or ``{}``: off)."""
    if not erasing:
        return None
    erasing = dict(erasing)
    known = set(inspect.signature(RandomErasing).parameters) - {'device', 'num_splits'}
    unknown = sorted(set(erasing) - known)
    if unknown:
        raise ValueError(f'data_preprocessor.erasing: unknown {unknown}; the arguments are '
                         f'those of timm.data.RandomErasing: {sorted(known)}')
    p = erasing.get('probability', 0.5)
    if not 0 <= p <= 1:
        raise ValueError(f'data_preprocessor.erasing.probability={p}: expected 0 to 1')
    if str(erasing.get('mode', 'const')).lower() not in ('const', 'rand', 'pixel'):
        raise ValueError(f"data_preprocessor.erasing.mode={erasing['mode']!r}: expected "
                         "'const', 'rand' or 'pixel'")
    return RandomErasing(device='cpu', **erasing)


@MODELS.register_module()
class EraseAfterMixDataPreprocessor(ClsDataPreprocessor):
    """``ClsDataPreprocessor`` + timm's batch-mode mixup/cutmix and random erasing on the
    normalised training batch (module docstring).

    Args:
        erasing (dict, optional): arguments of ``timm.data.RandomErasing`` (``probability``,
            ``mode``, ``min_area``, ``max_area``, ``min_aspect``, ``max_aspect``,
            ``min_count``, ``max_count``); the official scripts: ``probability=0.25,
            mode='pixel', max_count=1``. Default ``None``: no erasing.
        mixup_alpha (float): mixup Beta parameter (0: off). Default 0: no mixing. The official
            scripts: 0.8.
        cutmix_alpha (float): cutmix Beta parameter (0: off). Default 0. The official
            scripts: 1.0.
        mix_prob (float): probability of mixing a batch. Default 1.0.
        switch_prob (float): probability of cutmix when both are on. Default 0.5.
        non_blocking (bool): copy the batch to the device without waiting for the copy
            (mmengine's ``BaseDataPreprocessor`` option, which ``ClsDataPreprocessor`` does
            not pass on); it only helps with ``train_dataloader.pin_memory=True``. Default
            False.
        **kwargs: ``ClsDataPreprocessor`` arguments (mean, std, to_rgb, num_classes, which
            the mixing needs, ...). ``batch_augments`` (mmpretrain's mixing) is refused when
            ``mixup_alpha`` or ``cutmix_alpha`` is set: the batch would be mixed twice.
    """

    def __init__(self, erasing: Optional[dict] = None, mixup_alpha: float = 0.,
                 cutmix_alpha: float = 0., mix_prob: float = 1.0, switch_prob: float = 0.5,
                 non_blocking: bool = False, **kwargs):
        name = type(self).__name__
        for arg, value, low, high in (('mixup_alpha', mixup_alpha, 0, None),
                                      ('cutmix_alpha', cutmix_alpha, 0, None),
                                      ('mix_prob', mix_prob, 0, 1),
                                      ('switch_prob', switch_prob, 0, 1)):
            if value < low or (high is not None and value > high):
                raise ValueError(f'{name}.{arg}={value}: expected a number >= {low}'
                                 + (f' and <= {high}' if high is not None else ''))
        mixing = mixup_alpha > 0 or cutmix_alpha > 0
        if mixing and kwargs.get('batch_augments'):
            raise ValueError(
                f'{name} mixes the batch itself (mixup_alpha={mixup_alpha}, cutmix_alpha='
                f'{cutmix_alpha}), and batch_augments (model.train_cfg.augments) would mix it '
                'again: set model.train_cfg=None, or mixup_alpha=0 and cutmix_alpha=0.')
        super().__init__(**kwargs)
        self._non_blocking = bool(non_blocking)  # read by BaseDataPreprocessor.cast_data
        if mixing and not self.num_classes:
            raise ValueError(f'{name} needs num_classes (data_preprocessor.num_classes) to '
                             'mix the targets')
        self.mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=mix_prob,
                           switch_prob=switch_prob, mode='batch', label_smoothing=0.,
                           num_classes=self.num_classes or 0)
        self.mixup.mixup_enabled = mixing  # timm's switch (its mixup_off_epoch)
        self.erasing = build_erasing(erasing)
        self._uint8_pixels = False

    def mix_batch(self, inputs: Tensor, targets: List[Optional[Tensor]]
                  ) -> Tuple[Tensor, List[Optional[Tensor]]]:
        """timm's batch-mode mixing of ``inputs`` (``[B, C, H, W]``) and of every target
        (``[B, ...]``; ``None`` passes through) with one ``lam``, the reversed batch as the
        partner; the cutmix ``lam`` is the share of the image outside the box; mixup images
        of uint8 batches are rounded to whole pixel levels."""
        lam, use_cutmix = self.mixup._params_per_batch()
        if lam == 1.0:
            return inputs, targets
        if use_cutmix:
            H, W = inputs.shape[-2:]
            top, bottom, left, right = rand_box(H, W, lam)
            lam = 1. - (bottom - top) * (right - left) / float(H * W)
            inputs = inputs.clone()
            inputs[:, :, top:bottom, left:right] = inputs.flip(0)[:, :, top:bottom, left:right]
        else:
            inputs = inputs * lam + inputs.flip(0) * (1. - lam)
            if self._uint8_pixels:
                inputs = self._round_to_pixel_levels(inputs)
        return inputs, [None if t is None else t * lam + t.flip(0) * (1. - lam)
                        for t in targets]

    def _round_to_pixel_levels(self, inputs: Tensor) -> Tensor:
        """Round a mixed batch to whole uint8 levels, as the official collate rounds the
        mixed images (``np.rint``) before they are normalised."""
        if not self._enable_normalize:
            return inputs.round()
        return ((inputs * self.std + self.mean).round() - self.mean) / self.std

    def mix(self, data: dict) -> dict:
        """Mix the training batch and its one-hot targets (they become ``gt_score``)."""
        if not self.mixup.mixup_enabled:
            return data
        inputs, samples = data['inputs'], data['data_samples']
        labels = torch.cat([s.gt_label.view(-1)[:1] for s in samples]).to(inputs.device)
        inputs, (scores,) = self.mix_batch(inputs, [F.one_hot(labels, self.num_classes).float()])
        for sample, score in zip(samples, scores):
            sample.set_gt_score(score)
        return dict(data, inputs=inputs, data_samples=samples)

    def forward(self, data: dict, training: bool = False) -> dict:
        batch = data['inputs']
        first = batch if isinstance(batch, torch.Tensor) else batch[0]
        self._uint8_pixels = first.dtype == torch.uint8  # mixup rounds to uint8 levels
        data = super().forward(data, training)  # normalise (mmpretrain's batch_augments)
        if training:
            data = self.mix(data)
            if self.erasing is not None:
                self.erasing.device = data['inputs'].device  # the noise is drawn there
                data['inputs'] = self.erasing(data['inputs'].clone())
        return data

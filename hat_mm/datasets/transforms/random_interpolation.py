"""timm's ``interpolation='random'`` for mmpretrain's random resized crop and RandAugment.

The official training loaders (timm's ``create_transform``; ``tlt``'s token-label version of
it for VOLO) run with ``--train-interpolation random``, the default of ``train.py`` and
``train_kd.py``. That draws the interpolation at each use, bilinear or bicubic with equal
odds:

- the random resized crop draws one for each image;
- RandAugment (its interpolation is left unset by ``random``) draws one each time one of its
  geometric operations (rotate, shear, translate) is applied; the colour operations do not
  resample.

mmpretrain's transforms take one fixed interpolation. :class:`RandomInterpolationResizedCrop`
and :class:`RandomInterpolationRandAugment` are mmpretrain's ``RandomResizedCrop`` and
``RandAugment`` (same arguments) that also accept ``interpolation='random'`` (for
RandAugment: ``hparams=dict(interpolation='random')``). Any other value keeps mmpretrain's
behaviour, random numbers included. The draw uses numpy's generator, which mmengine seeds in
each data-loading worker.
"""
import numpy as np
from mmpretrain.datasets.transforms import RandAugment, RandomResizedCrop
from mmpretrain.registry import TRANSFORMS

#: what ``interpolation='random'`` draws from (timm's ``_RANDOM_INTERPOLATION``)
RANDOM_INTERPOLATIONS = ('bilinear', 'bicubic')
#: the values these transforms accept: mmcv's interpolations and ``'random'``
INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos', 'random')


def draw_interpolation() -> str:
    """One of :data:`RANDOM_INTERPOLATIONS`, with equal odds."""
    return RANDOM_INTERPOLATIONS[np.random.randint(len(RANDOM_INTERPOLATIONS))]


def _is_random(interpolation, where: str) -> bool:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f'{where}={interpolation!r} is not an interpolation; use one of '
                         f'{INTERPOLATIONS} (the official training: \'random\').')
    return interpolation == 'random'


@TRANSFORMS.register_module()
class RandomInterpolationResizedCrop(RandomResizedCrop):
    """mmpretrain's ``RandomResizedCrop``; ``interpolation='random'`` draws bilinear or
    bicubic for each image, as timm's ``RandomResizedCropAndInterpolation`` does (module
    docstring)."""

    def __init__(self, *args, interpolation: str = 'bilinear', **kwargs):
        self.random_interpolation = _is_random(
            interpolation, f'{type(self).__name__}: interpolation')
        if self.random_interpolation:
            interpolation = RANDOM_INTERPOLATIONS[0]
        super().__init__(*args, interpolation=interpolation, **kwargs)

    def __call__(self, results: dict):
        if self.random_interpolation:
            self.interpolation = draw_interpolation()
        return super().__call__(results)

    def __repr__(self):
        text = super().__repr__()
        if self.random_interpolation:
            text = text.replace(f'interpolation={self.interpolation}', 'interpolation=random')
        return text


@TRANSFORMS.register_module()
class RandomInterpolationRandAugment(RandAugment):
    """mmpretrain's ``RandAugment``; ``hparams=dict(interpolation='random')`` draws bilinear or
    bicubic each time an operation that has an interpolation (rotate, shear, translate and
    their token-label versions) is applied, as timm's RandAugment does (module docstring)."""

    def __init__(self, policies, num_policies, magnitude_level, hparams=dict(pad_val=128),
                 **kwargs):
        hparams = dict(hparams)
        self.random_interpolation = 'interpolation' in hparams and _is_random(
            hparams['interpolation'], f'{type(self).__name__}: hparams.interpolation')
        if self.random_interpolation:
            hparams['interpolation'] = RANDOM_INTERPOLATIONS[0]
        super().__init__(policies, num_policies, magnitude_level, hparams=hparams, **kwargs)
        if self.random_interpolation:
            self.hparams = dict(self.hparams, interpolation='random')

    def transform(self, results: dict):
        """Apply ``num_policies`` operations drawn with replacement, as mmpretrain does."""
        for index in self.random_policy_indices():
            op = self.transforms[index]
            if self.random_interpolation and hasattr(op, 'interpolation'):
                op.interpolation = draw_interpolation()
            results = op(results)
            if results is None:
                return None
        return results

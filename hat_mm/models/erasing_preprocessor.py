"""Random erasing where the official loader does it: on the normalised batch, after mixing.

The official scripts (HAT's ``train.py`` and ``train_kd.py``, on timm's and ``tlt``'s loaders
with the default prefetcher) mix the batch with mixup/cutmix as it is collated, then normalise
it on the GPU and run timm's ``RandomErasing`` there: each image is erased with probability
``--reprob`` 0.25, in one rectangle of 2% to 1/3 of its area and aspect 0.3 to 3.3, filled
(``--remode pixel``) with N(0, 1) noise per pixel and channel in the normalised space.
mmpretrain's ``RandomErasing`` runs in the data pipeline instead, before the mixing (so the
erased block gets blended with the partner image), on uint8 pixels (so the noise is clipped).

:class:`EraseAfterMixDataPreprocessor` is ``ClsDataPreprocessor`` (normalisation, then
mmpretrain's ``batch_augments``) followed in training by timm's own ``RandomErasing`` on the
normalised, mixed batch (the paper configs give it the official settings). Subclasses that mix
the batch themselves (``TokenLabelDataPreprocessor``) do it in :meth:`mix`, which runs before
the erasing.
"""
import inspect
from typing import Optional

from mmpretrain.models import ClsDataPreprocessor
from mmpretrain.registry import MODELS
from timm.data.random_erasing import RandomErasing


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
    """``ClsDataPreprocessor`` + timm's random erasing on the normalised, mixed training batch.

    Args:
        erasing (dict, optional): arguments of ``timm.data.RandomErasing`` (``probability``,
            ``mode``, ``min_area``, ``max_area``, ``min_aspect``, ``max_aspect``,
            ``min_count``, ``max_count``); the official scripts: ``probability=0.25,
            mode='pixel', max_count=1``. Default ``None``: no erasing.
        **kwargs: ``ClsDataPreprocessor`` arguments (mean, std, to_rgb, batch_augments, ...).
    """

    def __init__(self, erasing: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        self.erasing = build_erasing(erasing)

    def mix(self, data: dict) -> dict:
        """Mixing done by a subclass, on the normalised training batch; none here."""
        return data

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)  # normalise; mmpretrain's batch_augments
        if training:
            data = self.mix(data)
            if self.erasing is not None:
                self.erasing.device = data['inputs'].device  # the noise is drawn there
                data['inputs'] = self.erasing(data['inputs'].clone())
        return data

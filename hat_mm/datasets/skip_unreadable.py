"""Opt-in: train on past unreadable images, logging each one, up to a fraction of a batch.

Turned on by the top-level config key ``skip_unreadable_images`` (the largest fraction of one
batch that may be unreadable), e.g. ``--cfg-options skip_unreadable_images=0.1``;
:func:`enable_skip_unreadable_images` (called by ``tools/train.py``) then

- wraps ``train_dataloader.dataset`` in :class:`SkipUnreadableImages`: an image that raises
  :class:`~hat_mm.datasets.UnreadableImageError` is replaced by the next
  readable one of the dataset, and its path travels with the replacement sample;
- appends :class:`UnreadableImagesHook`, which logs every skipped path, the count per epoch
  (summed over ranks), and stops training when more than that fraction of a batch was
  unreadable (a moved or half-copied dataset, not a few bad files).

Validation and test images are never skipped: that would change the metric.
"""
import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, HOOKS
from mmengine.structures import BaseDataElement

from .transforms.image_loading import UnreadableImageError

SKIPPED_KEY = 'skipped_unreadable_images'


@DATASETS.register_module()
class SkipUnreadableImages:
    """Dataset wrapper: sample ``i`` of an unreadable image is the next readable sample.

    Args:
        dataset (dict | Dataset): the dataset (config) to wrap.
        max_consecutive (int): give up after this many unreadable images in a row.
    """

    def __init__(self, dataset, max_consecutive: int = 16):
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.max_consecutive = max_consecutive

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def full_init(self) -> None:
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        skipped = []
        for k in range(self.max_consecutive):
            try:
                data = self.dataset[(idx + k) % len(self.dataset)]
            except UnreadableImageError as err:
                skipped.append(err.path)
                continue
            if skipped and isinstance(data.get('data_samples'), BaseDataElement):
                data['data_samples'].set_metainfo({SKIPPED_KEY: skipped})
            return data
        raise UnreadableImageError(
            f'{self.max_consecutive} images in a row cannot be read, from {skipped[0]} to '
            f'{skipped[-1]}: is the dataset complete and mounted?')


@HOOKS.register_module()
class UnreadableImagesHook(Hook):
    """Logs the images that :class:`SkipUnreadableImages` skipped and stops training when
    more than ``max_fraction`` of one batch was unreadable."""

    def __init__(self, max_fraction: float):
        self.max_fraction = max_fraction
        self.count = 0

    def before_train_epoch(self, runner) -> None:
        self.count = 0

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        samples = (data_batch or {}).get('data_samples') or []
        skipped = [p for s in samples for p in s.metainfo.get(SKIPPED_KEY, [])]
        for path in skipped:
            runner.logger.warning(f'Skipped unreadable image {path}')
        self.count += len(skipped)
        if len(skipped) > self.max_fraction * len(samples):
            raise RuntimeError(
                f'{len(skipped)} of the {len(samples)} images of iteration {runner.iter + 1} '
                f'cannot be read, more than skip_unreadable_images={self.max_fraction}: '
                f'{", ".join(skipped)}. Check that the dataset is complete and mounted.')

    def after_train_epoch(self, runner) -> None:
        total = torch.tensor(self.count)
        all_reduce(total, op='sum')  # in place, over all ranks
        if total.item():
            runner.logger.warning(f'Epoch {runner.epoch + 1}: skipped {int(total.item())} '
                                  'unreadable images (listed above), each replaced by the next '
                                  'readable image.')


def enable_skip_unreadable_images(cfg) -> None:
    """Apply the config's ``skip_unreadable_images`` (see the module docstring)."""
    fraction = cfg.get('skip_unreadable_images')
    if fraction is None or cfg.get('train_dataloader') is None:
        return
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction <= 1:
        raise ValueError(f'skip_unreadable_images={fraction!r}: give the largest fraction of '
                         'a batch that may be unreadable, in (0, 1], e.g. 0.1.')
    dataset = cfg.train_dataloader.dataset
    if dataset.get('type') not in ('SkipUnreadableImages', SkipUnreadableImages):
        cfg.train_dataloader.dataset = dict(type='SkipUnreadableImages', dataset=dataset)
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('UnreadableImagesHook', UnreadableImagesHook) for h in hooks):
        hooks.append(dict(type='UnreadableImagesHook', max_fraction=float(fraction)))
    cfg.custom_hooks = hooks

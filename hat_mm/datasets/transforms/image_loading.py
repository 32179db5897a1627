"""``LoadImageFromFile`` that names the file it cannot read.

mmcv's transform fails on a zero-byte image with OpenCV's ``!buf.empty()`` assertion and no
path. This subclass behaves the same on readable images and raises
:class:`UnreadableImageError` naming the file (and the cause) otherwise. Importing hat_mm
registers it in mmpretrain's ``TRANSFORMS`` in place of the entry under which mmpretrain
re-registers mmcv's class, so every pipeline of an mmpretrain-scoped config (all the HAT
configs) gets it without editing the config; mmcv's original stays reachable as
``mmcv.LoadImageFromFile``.
"""
import mmpretrain.datasets.transforms  # noqa: F401  its registration of mmcv's class first
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmpretrain.registry import TRANSFORMS


class UnreadableImageError(OSError):
    """An image file that is missing, empty or cannot be decoded; ``path`` names it."""

    path = None


@TRANSFORMS.register_module(name='LoadImageFromFile', force=True)
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` whose errors name the image file (same arguments)."""

    def transform(self, results: dict):
        path = results['img_path']
        try:
            return super().transform(results)  # with ignore_empty=True: None, as before
        except Exception as err:  # noqa: BLE001  file access and decoding, nothing else
            error = UnreadableImageError(
                f'cannot read image {path}: {type(err).__name__}: {str(err).strip()}. Replace or '
                'remove the file (and its annotation line), or let training skip unreadable '
                'images: --cfg-options skip_unreadable_images=0.1 (README "Long runs").')
            error.path = path
            raise error from err

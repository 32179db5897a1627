"""RandAugment's geometric operations with the token-label score map moved along.

The VOLO recipe (the ``tlt`` token-labeling package, which the official HAT ``train.py``
uses) runs RandAugment with all of timm's operations, on the whole image before the random
resized crop, and moves the score map with the geometric ones (Rotate, ShearX/Y,
TranslateX/YRel): ``tlt`` warps it with ``scipy.ndimage.affine_transform`` (nearest cell;
the values are 0 outside the map, the class indices repeat the nearest edge).

:class:`TokenLabelRotate`, :class:`TokenLabelShear` and :class:`TokenLabelTranslate` are
mmpretrain's ``Rotate``, ``Shear`` and ``Translate`` (same arguments, same random numbers,
same image) that also warp ``results['token_label']`` (``[2, k, h, w]``: top-k values and
class indices on an ``h x w`` grid covering the image) with the affine map mmcv applied to
the image, by nearest cell, the values 0 where the source lies outside the image and the
indices those of the nearest edge cell, as ``tlt`` does. The map goes through the image's
own pixel geometry, so it stays aligned on images that are not square (``tlt`` warps the
grid as if the image were square). Use them, as the VOLO configs do, inside ``RandAugment``
before ``TokenLabelRandomResizedCrop`` and ``RandomFlip``: the map is cut and flipped only in
the data preprocessor, so they refuse to run after a crop or a flip.
"""
import cv2
import numpy as np
import torch
from mmpretrain.datasets.transforms import Rotate, Shear, Translate
from mmpretrain.registry import TRANSFORMS

FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


def warp_token_label(label: torch.Tensor, matrix: np.ndarray, img_hw) -> torch.Tensor:
    """Move a score map ``[2, k, h, w]`` covering an image of ``img_hw = (H, W)`` pixels by
    the affine map ``matrix`` (2 x 3, destination = ``matrix @ (x, y, 1)`` in pixel
    coordinates, pixel centres at integers: cv2's ``warpAffine`` convention)."""
    H, W = img_hw
    h, w = label.shape[-2:]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    x = (cols + 0.5) * W / w - 0.5  # centres of the destination cells, in image pixels
    y = (rows + 0.5) * H / h - 0.5
    inverse = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    src_x = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
    src_y = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    src_c = np.floor((src_x + 0.5) * w / W).astype(np.int64)
    src_r = np.floor((src_y + 0.5) * h / H).astype(np.int64)
    inside = torch.from_numpy((src_c >= 0) & (src_c < w) & (src_r >= 0) & (src_r < h))
    r = torch.from_numpy(np.clip(src_r, 0, h - 1))
    c = torch.from_numpy(np.clip(src_c, 0, w - 1))
    values = label[0][:, r, c] * inside.to(label.dtype)
    return torch.stack([values, label[1][:, r, c]])


class _MovesTokenLabel:
    """Mixin: after the image transform, move ``token_label`` by the same affine map."""

    def _affine(self, value: float, height: int, width: int) -> np.ndarray:
        raise NotImplementedError

    def random_negative(self, value):
        value = super().random_negative(value)
        self._applied = value  # the signed magnitude (angle) the image is transformed by
        return value

    def transform(self, results: dict) -> dict:
        self._applied = None
        height, width = results['img'].shape[:2]
        results = super().transform(results)
        if self._applied is not None and 'token_label' in results:
            box = tuple(float(v) for v in results.get('token_label_box', FULL_IMAGE))
            if not np.allclose(box, FULL_IMAGE) or results.get('flip'):
                done = f'cropped (token_label_box={box})' if not np.allclose(
                    box, FULL_IMAGE) else 'flipped (the map is flipped after its crop)'
                raise ValueError(
                    f'{type(self).__name__} moves the token-label map of the whole image, but '
                    f'the image was already {done}. Put RandAugment before '
                    'TokenLabelRandomResizedCrop and RandomFlip, as configs/_base_/'
                    'volo_token_labeling.py does.')
            results['token_label'] = warp_token_label(
                results['token_label'], self._affine(self._applied, height, width),
                (height, width))
        return results


@TRANSFORMS.register_module()
class TokenLabelRotate(_MovesTokenLabel, Rotate):
    """mmpretrain's ``Rotate`` that also moves ``token_label`` (module docstring)."""

    def _affine(self, angle, height, width):
        center = self.center or ((width - 1) * 0.5, (height - 1) * 0.5)
        return cv2.getRotationMatrix2D(center, -angle, self.scale)  # as mmcv.imrotate


@TRANSFORMS.register_module()
class TokenLabelShear(_MovesTokenLabel, Shear):
    """mmpretrain's ``Shear`` that also moves ``token_label`` (module docstring)."""

    def _affine(self, magnitude, height, width):
        if self.direction == 'horizontal':  # as mmcv.imshear
            return np.array([[1, magnitude, 0], [0, 1, 0]], dtype=np.float64)
        return np.array([[1, 0, 0], [magnitude, 1, 0]], dtype=np.float64)


@TRANSFORMS.register_module()
class TokenLabelTranslate(_MovesTokenLabel, Translate):
    """mmpretrain's ``Translate`` that also moves ``token_label`` (module docstring)."""

    def _affine(self, magnitude, height, width):
        if self.direction == 'horizontal':  # as Translate + mmcv.imtranslate
            return np.array([[1, 0, magnitude * width], [0, 1, 0]], dtype=np.float64)
        return np.array([[1, 0, 0], [0, 1, magnitude * height]], dtype=np.float64)

"""Pipeline transforms for token labeling (Jiang et al., *All Tokens Matter*, 2021), as the
VOLO recipe (and HAT's VOLO rows) train with it.

Score-map files (the format of the ``tlt`` package, which the official VOLO/HAT code reads):
one file per training image, ``<label_root>/<class dir>/<image stem>.pt``, holding a
``torch.float16`` tensor of shape ``[2, k, H, W]``: ``[0]`` the teacher's top-k dense logits
per location of an ``H x W`` grid covering the image, ``[1]`` their class indices (stored as
float16, exact up to 2048 classes). ``tools/dataset_converters/make_token_labels.py`` writes
them from any mmpretrain classifier; the label data released with the VOLO code can be used
as is.

The maps are not warped per sample. The pipeline records where the training crop lies in the
image (``token_label_box``, normalised ``(x0, y0, x1, y1)``) and whether it was flipped
(mmcv's ``RandomFlip`` sets ``flip`` / ``flip_direction``); the data preprocessor
(:class:`hat_mm.models.TokenLabelDataPreprocessor`) then cuts the dense
targets out of the map with ``roi_align`` on the batch, as ``tlt`` does. Supported spatial
transforms: :class:`TokenLabelRandomResizedCrop` (once) and ``RandomFlip`` (horizontal,
vertical or diagonal) after it, and before the crop RandAugment's geometric operations in
their versions that move the map itself (:mod:`.token_label_geometric`: ``TokenLabelRotate``,
``TokenLabelShear``, ``TokenLabelTranslate``; mmpretrain's plain ``Rotate``, ``Shear`` and
``Translate`` would move the pixels under a map that stays). Photometric transforms (colour
RandAugment policies, ``ColorJitter``, ``RandomErasing``) do not move pixels and need nothing.
"""
import os.path as osp
from typing import Optional

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from .random_interpolation import RandomInterpolationResizedCrop


def token_label_path(label_root: str, img_path: str, img_root: Optional[str] = None) -> str:
    """Where the score map of ``img_path`` lives.

    By default the last two path components (``<class dir>/<file>``, the ImageNet train
    layout and ``tlt``'s convention) with the extension replaced by ``.pt``; with ``img_root``
    the path relative to it.
    """
    if img_root:
        rel = osp.relpath(img_path, img_root)
    else:
        parts = osp.normpath(img_path).split(osp.sep)
        rel = osp.join(*parts[-2:]) if len(parts) >= 2 else parts[-1]
    return osp.join(label_root, osp.splitext(rel)[0] + '.pt')


@TRANSFORMS.register_module()
class LoadTokenLabel(BaseTransform):
    """Load the token-label score map of the sample (see the module docstring).

    Put it right after ``LoadImageFromFile``, before any crop. Added keys:
    ``token_label`` (``float16`` tensor ``[2, k, H, W]``) and ``token_label_box``
    (``float32`` array ``(x0, y0, x1, y1)`` = ``(0, 0, 1, 1)``: the whole image). Pack them
    with ``dict(type='PackInputs', algorithm_keys=('token_label', 'token_label_box'))``.

    Args:
        label_root (str): folder of the score maps.
        img_root (str, optional): image folder the map paths are relative to; default: the
            last two components of the image path (``<class>/<file>``).
    """

    def __init__(self, label_root: str, img_root: Optional[str] = None):
        self.label_root = label_root
        self.img_root = img_root

    def transform(self, results: dict) -> dict:
        path = token_label_path(self.label_root, results['img_path'], self.img_root)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'token-label score map {path} of image {results["img_path"]} does not '
                'exist. Write the maps with tools/dataset_converters/make_token_labels.py '
                '(or point label_root / token_label_root to the downloaded label data).')
        label = torch.load(path, map_location='cpu', weights_only=True)
        if not (isinstance(label, torch.Tensor) and label.dim() == 4 and label.shape[0] == 2):
            raise ValueError(f'{path}: expected a tensor [2, k, H, W] (top-k values and '
                             f'indices), got {getattr(label, "shape", type(label))}')
        results['token_label'] = label.to(torch.float16)
        results['token_label_box'] = np.array([0., 0., 1., 1.], dtype=np.float32)
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(label_root={self.label_root!r})'


@TRANSFORMS.register_module()
class TokenLabelRandomResizedCrop(RandomInterpolationResizedCrop):
    """mmpretrain's ``RandomResizedCrop`` that also records the crop box.

    Same arguments and randomness as ``RandomResizedCrop``, and ``interpolation='random'``
    (:class:`RandomInterpolationResizedCrop`). Updates ``token_label_box``
    (normalised to the image the score map covers) when the key is present; a second crop
    composes with the first.
    """

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        offset_h, offset_w, target_h, target_w = self.rand_crop_params(img)
        img = mmcv.imcrop(img, bboxes=np.array([offset_w, offset_h, offset_w + target_w - 1,
                                                offset_h + target_h - 1]))
        img = mmcv.imresize(img, tuple(self.scale[::-1]), interpolation=self.interpolation,
                            backend=self.backend)
        results['img'] = img
        results['img_shape'] = img.shape
        if 'token_label_box' in results:
            x0, y0, x1, y1 = [float(v) for v in results['token_label_box']]
            bw, bh = x1 - x0, y1 - y0
            results['token_label_box'] = np.array([
                x0 + bw * offset_w / w, y0 + bh * offset_h / h,
                x0 + bw * (offset_w + target_w) / w, y0 + bh * (offset_h + target_h) / h,
            ], dtype=np.float32)
        return results

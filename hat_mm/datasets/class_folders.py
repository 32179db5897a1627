"""Class-folder test sets of the robustness benchmarks, on mmpretrain's ``CustomDataset``
(its folder listing, file filter and sample walk), registered in mmpretrain's ``DATASETS``:

- :class:`WnidFolderDataset`: ``<data_root>/<data_prefix>/<wnid>/*`` labelled by a fixed wnid
  list (ImageNet-A / ImageNet-R: their 200 classes) or by the sorted folder names
  (ImageNet-Sketch, Stylized-ImageNet: all 1000);
- :class:`ImageNetC`: ``<data_root>/<corruption>/<severity>/<wnid>/*``; every sample carries
  its ``corruption`` and ``severity``, the one source :class:`ImageNetCMetric
  <hat_mm.evaluation.ImageNetCMetric>` reads them from.

``CustomDataset`` labels by the positions of the sorted folders, so a missing folder would
shift every label after it; these datasets fix the label of each wnid instead and check the
folders against it.
"""
import os.path as osp
from typing import List, Optional, Sequence, Union

from mmengine.logging import MMLogger
from mmpretrain.datasets import CustomDataset
from mmpretrain.datasets.custom import find_folders, get_samples
from mmpretrain.registry import DATASETS

from .imagenet_subsets import subset_wnids

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
# The 15 corruptions of ImageNet-C in the order of Hendrycks & Dietterich (noise, blur,
# weather, digital).
IMAGENET_C_CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur',
    'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast',
    'elastic_transform', 'pixelate', 'jpeg_compression')
IMAGENET_C_SEVERITIES = (1, 2, 3, 4, 5)


def _check_count(root: str, folders: Sequence[str], expected: Optional[int]) -> None:
    if expected is not None and len(folders) != expected:
        raise ValueError(
            f'{root} has {len(folders)} class folders, expected {expected}: labels are the '
            'positions of the sorted folder names, so every class folder must be there (or '
            'set num_classes=None for a custom set).')


@DATASETS.register_module()
class WnidFolderDataset(CustomDataset):
    """Images in one folder per class, labelled by a fixed list of wnids.

    Args:
        wnids: ``'imagenet-a'`` / ``'imagenet-r'`` (their 200 wnids; label = position in the
            list), a list of wnids, or None: the sorted folder names.
        num_classes: with ``wnids=None``, the number of class folders expected (1000 for
            ImageNet-Sketch and Stylized-ImageNet); with a wnid list folders may be missing
            (warned) but every folder must be in the list.
        Other arguments: those of ``CustomDataset`` (``data_root``, ``data_prefix``,
        ``pipeline``, ``extensions``, ...).
    """

    def __init__(self, data_root: str, data_prefix: Union[str, dict] = '',
                 wnids: Union[None, str, Sequence[str]] = None,
                 num_classes: Optional[int] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS, **kwargs):
        self.wnids = subset_wnids(wnids) if wnids is not None else None
        self.num_classes = num_classes
        kwargs.setdefault('test_mode', True)
        super().__init__(data_root=data_root, data_prefix=data_prefix,
                         extensions=extensions, **kwargs)

    def _find_samples(self):
        root = self.img_prefix
        if not osp.isdir(root):
            raise FileNotFoundError(f'{type(self).__name__}: {root} does not exist (expected '
                                    '<root>/<wnid>/<image>).')
        folders, folder_to_idx = find_folders(root)
        if self.wnids is None:
            _check_count(root, folders, self.num_classes)
            classes = folders
        else:
            classes = self.wnids
            unknown = sorted(set(folders) - set(classes))
            if unknown:
                raise ValueError(
                    f'{root} has folders that are not among the {len(classes)} classes of '
                    f'this benchmark: {unknown[:10]}{" ..." if len(unknown) > 10 else ""}. '
                    'Check data_root and the wnids of the dataset config.')
            absent = [w for w in classes if w not in folder_to_idx]
            if absent:
                MMLogger.get_current_instance().warning(
                    f'{len(absent)} of the {len(classes)} class folders are missing under '
                    f'{root} (e.g. {absent[:5]}); the others keep their labels.')
            folder_to_idx = {w: classes.index(w) for w in folders}
        self._metainfo['classes'] = tuple(classes)
        samples, _ = get_samples(root, folder_to_idx, is_valid_file=self.is_valid_file)
        if not samples:
            raise RuntimeError(f'No images found under {root} ({self.extensions}).')
        return samples


@DATASETS.register_module()
class ImageNetC(CustomDataset):
    """ImageNet-C (Hendrycks & Dietterich, ICLR 2019) as released::

        <data_root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG

    Labels follow the sorted class folder names (the standard ImageNet-1k order);
    ``num_classes`` is checked so that a missing folder cannot shift them. ``corruption``
    and ``severity`` are added to every sample and to the ``meta_keys`` of the pipeline's
    ``PackInputs``.

    Args:
        data_root: the ImageNet-C root.
        corruptions: those to evaluate (default: every corruption folder, the 15 standard
            ones first in their usual order).
        severities: those to evaluate (default 1-5; missing ones are warned about).
        num_classes: class folders expected (1000); None skips the check.
    """

    def __init__(self, data_root: str, corruptions: Optional[Sequence[str]] = None,
                 severities: Sequence[int] = IMAGENET_C_SEVERITIES,
                 num_classes: Optional[int] = 1000, pipeline: Sequence = (),
                 extensions: Sequence[str] = IMG_EXTENSIONS, **kwargs):
        self.corruptions = list(corruptions) if corruptions is not None else None
        self.severities = [int(s) for s in severities]
        self.num_classes = num_classes
        kwargs.setdefault('test_mode', True)
        super().__init__(data_root=data_root, extensions=extensions,
                         pipeline=_with_meta_keys(pipeline, ('corruption', 'severity')),
                         **kwargs)

    def _corruption_dirs(self, root: str) -> List[str]:
        if self.corruptions is not None:
            missing = [c for c in self.corruptions if not osp.isdir(osp.join(root, c))]
            if missing:
                raise FileNotFoundError(
                    f'ImageNet-C corruption folder(s) {missing} not found under {root} '
                    '(expected <root>/<corruption>/<severity>/<wnid>/*.JPEG).')
            return self.corruptions
        found = [c for c in find_folders(root)[0]
                 if any(s.isdigit() for s in find_folders(osp.join(root, c))[0])]
        order = {c: i for i, c in enumerate(IMAGENET_C_CORRUPTIONS)}
        return sorted(found, key=lambda c: (order.get(c, len(order)), c))

    def load_data_list(self):
        root = self.img_prefix
        if not osp.isdir(root):
            raise FileNotFoundError(f'ImageNet-C root {root} does not exist.')
        dirs, missing = [], []
        for c in self._corruption_dirs(root):
            for s in self.severities:
                d = osp.join(root, c, str(s))
                (dirs if osp.isdir(d) else missing).append((c, s, d))
        if not dirs:
            raise FileNotFoundError(
                f'No <corruption>/<severity> folders under {root} (expected '
                '<root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG).')
        if missing:
            MMLogger.get_current_instance().warning(
                'ImageNet-C: missing (corruption, severity) folders, evaluated without them: '
                + ', '.join(f'{c}/{s}' for c, s, _ in missing))
        classes = sorted(set().union(*(find_folders(d)[0] for _, _, d in dirs)))
        _check_count(f'ImageNet-C under {root}', classes, self.num_classes)
        self._metainfo['classes'] = tuple(classes)
        label = {w: i for i, w in enumerate(classes)}
        data_list = []
        for c, s, d in dirs:
            samples, _ = get_samples(d, {w: label[w] for w in find_folders(d)[0]},
                                     is_valid_file=self.is_valid_file)
            data_list += [dict(img_path=osp.join(d, path), gt_label=gt, corruption=c,
                               severity=s) for path, gt in samples]
        if not data_list:
            raise RuntimeError(f'No images found under {root} ({self.extensions}).')
        return data_list


def _with_meta_keys(pipeline: Sequence, keys: Sequence[str]) -> list:
    """The pipeline config with ``keys`` added to the ``meta_keys`` of its ``PackInputs``."""
    from mmpretrain.datasets.transforms import PackInputs
    out = []
    for t in pipeline:
        if isinstance(t, dict) and str(t.get('type', '')).split('.')[-1] == 'PackInputs':
            meta = tuple(t.get('meta_keys', PackInputs.DEFAULT_META_KEYS))
            t = dict(t, meta_keys=meta + tuple(k for k in keys if k not in meta))
        out.append(t)
    return out

"""Annotation lists checked before anything is built, every bad line named.

mmpretrain's ``CustomDataset`` (and ``ImageNet``, ...) reads ``<path> <label>`` lines and fails
on a blank line or a missing label with ``not enough values to unpack``, on a non-integer label
with ``invalid literal for int()``, and takes any integer: a label outside
``[0, num_classes)`` fails much later, inside the loss. :func:`check_annotation_files` reads
the same file the dataset will read (the dataset is built without loading its data to find
it, so ``split`` and ``data_root`` resolve as they will in training) and reports the file, the
line numbers and what is wrong.
"""
import copy
import os.path as osp
from typing import Iterable, Optional, Tuple

from mmengine.fileio import list_from_file
from mmpretrain.datasets import CustomDataset
from mmpretrain.datasets.custom import find_folders
from mmpretrain.registry import DATASETS

from ..utils.config_checks import dataset_configs, dataset_layout

MAX_REPORTED_LINES = 10


def _line_problem(line: str, with_label: bool, num_classes: Optional[int]) -> Optional[str]:
    """What is wrong with one line, as mmpretrain's ``CustomDataset`` parses it."""
    text = line.strip()
    if not text:
        return 'blank line'
    if not with_label:
        return None
    parts = text.rsplit(' ', 1)
    if len(parts) != 2:
        return 'no label'
    try:
        label = int(parts[1])
    except ValueError:
        return f'label {parts[1]!r} is not an integer'
    if num_classes is not None and not 0 <= label < num_classes:
        return f'label {label} is outside [0, {num_classes})'
    return None


def check_annotation_file(path: str, with_label: bool = True,
                          num_classes: Optional[Tuple[int, str]] = None,
                          where: str = 'ann_file') -> None:
    """Raise ``ValueError`` naming ``path`` and the lines that ``CustomDataset`` cannot use.

    ``num_classes`` is ``(n, what sets n)``: labels must lie in ``[0, n)``.
    """
    n, source = num_classes if num_classes else (None, '')
    bad, count = [], 0
    lines = list_from_file(path)
    if not any(line.strip() for line in lines):
        raise ValueError(f'{where}: {path} lists no image (it is empty), so the dataset would '
                         'have nothing to read. Fill it, or point the config at the right '
                         f'file: --cfg-options {where}=...')
    for lineno, line in enumerate(lines, start=1):
        problem = _line_problem(line, with_label, n)
        if problem:
            count += 1
            if len(bad) < MAX_REPORTED_LINES:
                bad.append(f'{path}:{lineno}: {problem}: {line!r}')
    if count:
        shown = '\n  '.join(bad)
        more = f'\n  ... and {count - len(bad)} more' if count > len(bad) else ''
        expected = ("'<image path> <integer label>'" + (f' with labels in [0, {n}) ({source})'
                                                        if n is not None else '')
                    if with_label else "'<image path>'")
        raise ValueError(f'{where}: {count} line(s) of {path} cannot be used; each line must be '
                         f'{expected}. Fix or delete them:\n  {shown}{more}')


def _num_classes(cfg, dataset) -> Optional[Tuple[int, str]]:
    """The smallest class count that labels must respect, and what sets it."""
    bounds = []
    classes = dataset.metainfo.get('classes')
    if classes:
        bounds.append((len(classes), f'{len(classes)} classes in the dataset'))
    model = cfg.get('model') or {}
    head = model.get('head') if isinstance(model.get('head'), dict) else {}
    for key, n in (('model.head.num_classes', head.get('num_classes')),
                   ('model.num_classes', model.get('num_classes'))):
        if isinstance(n, int) and not isinstance(n, bool):
            bounds.append((n, f'{key}={n}'))
            break
    return min(bounds) if bounds else None


def _build_without_data(ds_cfg: dict):
    """The dataset object of a ``CustomDataset``-type config, its data not loaded; else None."""
    ds_type = ds_cfg.get('type')
    cls = DATASETS.get(ds_type) if isinstance(ds_type, str) else ds_type
    if not isinstance(cls, type) or not issubclass(cls, CustomDataset):
        return None
    ds_cfg = copy.deepcopy(dict(ds_cfg))
    ds_cfg.update(pipeline=[], lazy_init=True)
    try:
        return DATASETS.build(ds_cfg)
    except Exception:  # noqa: BLE001  the runner builds it again and reports its own error
        return None


def check_annotation_files(cfg, dataloader_keys: Iterable[str]) -> None:
    """Check the annotation list (or the class folders) of every ``CustomDataset``-type
    dataset in the given dataloaders of ``cfg``: format, and labels within the class count of
    the dataset and of ``model.head.num_classes``."""
    for key in dataloader_keys:
        loader = cfg.get(key)
        if not isinstance(loader, dict) or 'dataset' not in loader:
            continue
        for where, ds_cfg in dataset_configs(loader['dataset'], f'{key}.dataset'):
            indices = ds_cfg.get('indices')
            if isinstance(indices, int) and not isinstance(indices, bool) and indices < 1:
                raise ValueError(f'{where}.indices={indices}: the dataset would have no image; '
                                 'give how many of its images to use (1 or more), or leave '
                                 'indices out for all of them.')
            dataset = _build_without_data(ds_cfg)
            if dataset is None:
                continue
            bound = _num_classes(cfg, dataset)
            if dataset.ann_file:
                check_annotation_file(dataset.ann_file, dataset.with_label, bound,
                                      f'{where}.ann_file')
            elif '://' not in str(dataset.img_prefix) and not osp.isdir(dataset.img_prefix):
                layout, small = dataset_layout(ds_cfg.get('type', ''))
                raise FileNotFoundError(
                    f'{where}: {dataset.data_root} has no annotation list (ann_file) and no '
                    f'image folder {dataset.img_prefix}, so there is nothing to read. Put the '
                    f'dataset there ({layout}) or point the config at it: --cfg-options '
                    f'{where}.data_root=/path/to/data. Small data of this kind for a smoke '
                    f'run: {small}')
            elif dataset.with_label and bound is not None and osp.isdir(dataset.img_prefix):
                folders, _ = find_folders(dataset.img_prefix)  # one label per class folder
                if len(folders) > bound[0]:
                    raise ValueError(
                        f'{where}: {dataset.img_prefix} has {len(folders)} class folders, so '
                        f'labels up to {len(folders) - 1}, but {bound[1]}. Remove the extra '
                        'folders or set the number of classes.')

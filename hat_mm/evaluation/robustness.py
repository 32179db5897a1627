"""Robustness benchmarks for ``tools/test.py``: ImageNet-C (per-corruption top-1, mCE),
ImageNet-A and ImageNet-R (200-class subsets), ImageNet-Sketch and Stylized-ImageNet.

Importing this module registers, in mmpretrain's registries (``default_scope='mmpretrain'``):

- ``DATASETS``: :class:`ImageNetC` (``<root>/<corruption>/<severity>/<wnid>/*``; every
  sample carries ``corruption`` and ``severity``) and :class:`WnidFolderDataset`
  (``<root>/<wnid>/*``; labels from a fixed wnid list, e.g. the 200 classes of ImageNet-A /
  ImageNet-R, or from the sorted folder names for the 1000-class sets);
- ``METRICS``: :class:`ImageNetCMetric` (top-1 per corruption and severity, corruption
  errors normalised by AlexNet's and their mean, the mCE) and :class:`SubsetAccuracy` (top-1
  after restricting the 1000-way prediction to a subset of classes).

The configs in ``configs/robustness/`` use them; see each config's header for the folder
layout it expects.

Sources of the constants (facts, checked against each other):

- ``ALEXNET_ERR``: AlexNet's top-1 error on ImageNet-C averaged over the 5 severities, per
  corruption, the normalisation table of Hendrycks & Dietterich, ICLR 2019 (as published in
  their evaluation code, hendrycks/robustness).
- ``IMAGENET_A_INDICES``: the 200 ImageNet-1k class indices of ImageNet-A, i.e. the keys of
  ``thousand_k_to_200`` with a value other than -1 in ``eval.py`` of
  hendrycks/natural-adv-examples (Hendrycks et al., CVPR 2021).
- ``IMAGENET_R_INDICES``: the 200 ImageNet-1k class indices of ImageNet-R, the
  ``imagenet_r_indices`` list in ``eval.py`` of hendrycks/imagenet-r (Hendrycks et al.,
  ICCV 2021); ImageNet-A and ImageNet-R use different 200-class lists.
- ``IMAGENET_A_WNIDS`` / ``IMAGENET_R_WNIDS``: the WordNet ids of those indices in the
  standard (sorted) ImageNet-1k class order; both lists are sorted, so the position of a
  wnid in its list is the label torchvision's ``ImageFolder`` gives the released folders.
  Both index lists and wnid lists equal the copies timm ships (``timm/data/_info/``).
"""
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS, METRICS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')

# The 15 ImageNet-C corruptions in the order of Hendrycks & Dietterich (noise, blur, weather,
# digital) and AlexNet's error on each, averaged over severities 1-5.
IMAGENET_C_CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur',
    'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast',
    'elastic_transform', 'pixelate', 'jpeg_compression')
ALEXNET_ERR = dict(zip(IMAGENET_C_CORRUPTIONS, (
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816,
    0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500)))
IMAGENET_C_SEVERITIES = (1, 2, 3, 4, 5)

IMAGENET_A_INDICES = (
    6, 11, 13, 15, 17, 22, 23, 27, 30, 37, 39, 42, 47, 50, 57, 70, 71, 76, 79, 89, 90, 94,
    96, 97, 99, 105, 107, 108, 110, 113, 124, 125, 130, 132, 143, 144, 150, 151, 207, 234,
    235, 254, 277, 283, 287, 291, 295, 298, 301, 306, 307, 308, 309, 310, 311, 313, 314,
    315, 317, 319, 323, 324, 326, 327, 330, 334, 335, 336, 347, 361, 363, 372, 378, 386,
    397, 400, 401, 402, 404, 407, 411, 416, 417, 420, 425, 428, 430, 437, 438, 445, 456,
    457, 461, 462, 470, 472, 483, 486, 488, 492, 496, 514, 516, 528, 530, 539, 542, 543,
    549, 552, 557, 561, 562, 569, 572, 573, 575, 579, 589, 606, 607, 609, 614, 626, 627,
    640, 641, 642, 643, 658, 668, 677, 682, 684, 687, 701, 704, 719, 736, 746, 749, 752,
    758, 763, 765, 768, 773, 774, 776, 779, 780, 786, 792, 797, 802, 803, 804, 813, 815,
    820, 823, 831, 833, 835, 839, 845, 847, 850, 859, 862, 870, 879, 880, 888, 890, 897,
    900, 907, 913, 924, 932, 933, 934, 937, 943, 945, 947, 951, 954, 956, 957, 959, 971,
    972, 980, 981, 984, 986, 987, 988,
)
IMAGENET_A_WNIDS = (
    'n01498041', 'n01531178', 'n01534433', 'n01558993', 'n01580077', 'n01614925',
    'n01616318', 'n01631663', 'n01641577', 'n01669191', 'n01677366', 'n01687978',
    'n01694178', 'n01698640', 'n01735189', 'n01770081', 'n01770393', 'n01774750',
    'n01784675', 'n01819313', 'n01820546', 'n01833805', 'n01843383', 'n01847000',
    'n01855672', 'n01882714', 'n01910747', 'n01914609', 'n01924916', 'n01944390',
    'n01985128', 'n01986214', 'n02007558', 'n02009912', 'n02037110', 'n02051845',
    'n02077923', 'n02085620', 'n02099601', 'n02106550', 'n02106662', 'n02110958',
    'n02119022', 'n02123394', 'n02127052', 'n02129165', 'n02133161', 'n02137549',
    'n02165456', 'n02174001', 'n02177972', 'n02190166', 'n02206856', 'n02219486',
    'n02226429', 'n02231487', 'n02233338', 'n02236044', 'n02259212', 'n02268443',
    'n02279972', 'n02280649', 'n02281787', 'n02317335', 'n02325366', 'n02346627',
    'n02356798', 'n02361337', 'n02410509', 'n02445715', 'n02454379', 'n02486410',
    'n02492035', 'n02504458', 'n02655020', 'n02669723', 'n02672831', 'n02676566',
    'n02690373', 'n02701002', 'n02730930', 'n02777292', 'n02782093', 'n02787622',
    'n02793495', 'n02797295', 'n02802426', 'n02814860', 'n02815834', 'n02837789',
    'n02879718', 'n02883205', 'n02895154', 'n02906734', 'n02948072', 'n02951358',
    'n02980441', 'n02992211', 'n02999410', 'n03014705', 'n03026506', 'n03124043',
    'n03125729', 'n03187595', 'n03196217', 'n03223299', 'n03250847', 'n03255030',
    'n03291819', 'n03325584', 'n03355925', 'n03384352', 'n03388043', 'n03417042',
    'n03443371', 'n03444034', 'n03445924', 'n03452741', 'n03483316', 'n03584829',
    'n03590841', 'n03594945', 'n03617480', 'n03666591', 'n03670208', 'n03717622',
    'n03720891', 'n03721384', 'n03724870', 'n03775071', 'n03788195', 'n03804744',
    'n03837869', 'n03840681', 'n03854065', 'n03888257', 'n03891332', 'n03935335',
    'n03982430', 'n04019541', 'n04033901', 'n04039381', 'n04067472', 'n04086273',
    'n04099969', 'n04118538', 'n04131690', 'n04133789', 'n04141076', 'n04146614',
    'n04147183', 'n04179913', 'n04208210', 'n04235860', 'n04252077', 'n04252225',
    'n04254120', 'n04270147', 'n04275548', 'n04310018', 'n04317175', 'n04344873',
    'n04347754', 'n04355338', 'n04366367', 'n04376876', 'n04389033', 'n04399382',
    'n04442312', 'n04456115', 'n04482393', 'n04507155', 'n04509417', 'n04532670',
    'n04540053', 'n04554684', 'n04562935', 'n04591713', 'n04606251', 'n07583066',
    'n07695742', 'n07697313', 'n07697537', 'n07714990', 'n07718472', 'n07720875',
    'n07734744', 'n07749582', 'n07753592', 'n07760859', 'n07768694', 'n07831146',
    'n09229709', 'n09246464', 'n09472597', 'n09835506', 'n11879895', 'n12057211',
    'n12144580', 'n12267677',
)
IMAGENET_R_INDICES = (
    1, 2, 4, 6, 8, 9, 11, 13, 22, 23, 26, 29, 31, 39, 47, 63, 71, 76, 79, 84, 90, 94, 96,
    97, 99, 100, 105, 107, 113, 122, 125, 130, 132, 144, 145, 147, 148, 150, 151, 155, 160,
    161, 162, 163, 171, 172, 178, 187, 195, 199, 203, 207, 208, 219, 231, 232, 234, 235,
    242, 245, 247, 250, 251, 254, 259, 260, 263, 265, 267, 269, 276, 277, 281, 288, 289,
    291, 292, 293, 296, 299, 301, 308, 309, 310, 311, 314, 315, 319, 323, 327, 330, 334,
    335, 337, 338, 340, 341, 344, 347, 353, 355, 361, 362, 365, 366, 367, 368, 372, 388,
    390, 393, 397, 401, 407, 413, 414, 425, 428, 430, 435, 437, 441, 447, 448, 457, 462,
    463, 469, 470, 471, 472, 476, 483, 487, 515, 546, 555, 558, 570, 579, 583, 587, 593,
    594, 596, 609, 613, 617, 621, 629, 637, 657, 658, 701, 717, 724, 763, 768, 774, 776,
    779, 780, 787, 805, 812, 815, 820, 824, 833, 847, 852, 866, 875, 883, 889, 895, 907,
    928, 931, 932, 933, 934, 936, 937, 943, 945, 947, 948, 949, 951, 953, 954, 957, 963,
    965, 967, 980, 981, 983, 988,
)
IMAGENET_R_WNIDS = (
    'n01443537', 'n01484850', 'n01494475', 'n01498041', 'n01514859', 'n01518878',
    'n01531178', 'n01534433', 'n01614925', 'n01616318', 'n01630670', 'n01632777',
    'n01644373', 'n01677366', 'n01694178', 'n01748264', 'n01770393', 'n01774750',
    'n01784675', 'n01806143', 'n01820546', 'n01833805', 'n01843383', 'n01847000',
    'n01855672', 'n01860187', 'n01882714', 'n01910747', 'n01944390', 'n01983481',
    'n01986214', 'n02007558', 'n02009912', 'n02051845', 'n02056570', 'n02066245',
    'n02071294', 'n02077923', 'n02085620', 'n02086240', 'n02088094', 'n02088238',
    'n02088364', 'n02088466', 'n02091032', 'n02091134', 'n02092339', 'n02094433',
    'n02096585', 'n02097298', 'n02098286', 'n02099601', 'n02099712', 'n02102318',
    'n02106030', 'n02106166', 'n02106550', 'n02106662', 'n02108089', 'n02108915',
    'n02109525', 'n02110185', 'n02110341', 'n02110958', 'n02112018', 'n02112137',
    'n02113023', 'n02113624', 'n02113799', 'n02114367', 'n02117135', 'n02119022',
    'n02123045', 'n02128385', 'n02128757', 'n02129165', 'n02129604', 'n02130308',
    'n02134084', 'n02138441', 'n02165456', 'n02190166', 'n02206856', 'n02219486',
    'n02226429', 'n02233338', 'n02236044', 'n02268443', 'n02279972', 'n02317335',
    'n02325366', 'n02346627', 'n02356798', 'n02363005', 'n02364673', 'n02391049',
    'n02395406', 'n02398521', 'n02410509', 'n02423022', 'n02437616', 'n02445715',
    'n02447366', 'n02480495', 'n02480855', 'n02481823', 'n02483362', 'n02486410',
    'n02510455', 'n02526121', 'n02607072', 'n02655020', 'n02672831', 'n02701002',
    'n02749479', 'n02769748', 'n02793495', 'n02797295', 'n02802426', 'n02808440',
    'n02814860', 'n02823750', 'n02841315', 'n02843684', 'n02883205', 'n02906734',
    'n02909870', 'n02939185', 'n02948072', 'n02950826', 'n02951358', 'n02966193',
    'n02980441', 'n02992529', 'n03124170', 'n03272010', 'n03345487', 'n03372029',
    'n03424325', 'n03452741', 'n03467068', 'n03481172', 'n03494278', 'n03495258',
    'n03498962', 'n03594945', 'n03602883', 'n03630383', 'n03649909', 'n03676483',
    'n03710193', 'n03773504', 'n03775071', 'n03888257', 'n03930630', 'n03947888',
    'n04086273', 'n04118538', 'n04133789', 'n04141076', 'n04146614', 'n04147183',
    'n04192698', 'n04254680', 'n04266014', 'n04275548', 'n04310018', 'n04325704',
    'n04347754', 'n04389033', 'n04409515', 'n04465501', 'n04487394', 'n04522168',
    'n04536866', 'n04552348', 'n04591713', 'n07614500', 'n07693725', 'n07695742',
    'n07697313', 'n07697537', 'n07714571', 'n07714990', 'n07718472', 'n07720875',
    'n07734744', 'n07742313', 'n07745940', 'n07749582', 'n07753275', 'n07753592',
    'n07768694', 'n07873807', 'n07880968', 'n07920052', 'n09472597', 'n09835506',
    'n10565667', 'n12267677',
)

SUBSETS = {
    'imagenet-a': (IMAGENET_A_INDICES, IMAGENET_A_WNIDS),
    'imagenet-r': (IMAGENET_R_INDICES, IMAGENET_R_WNIDS),
}


def _subset(name: str) -> Tuple[Tuple[int, ...], Tuple[str, ...]]:
    key = name.lower().replace('_', '-')
    if key not in SUBSETS:
        raise KeyError(f'Unknown class subset {name!r}; known: {sorted(SUBSETS)} (or give '
                       'the list itself)')
    return SUBSETS[key]


def subset_indices(indices: Union[str, Sequence[int]]) -> List[int]:
    """The ImageNet-1k indices of a subset: ``'imagenet-a'``, ``'imagenet-r'`` or a list."""
    return list(_subset(indices)[0]) if isinstance(indices, str) else [int(i) for i in indices]


def subset_wnids(wnids: Union[str, Sequence[str]]) -> List[str]:
    """The wnids of a subset: ``'imagenet-a'``, ``'imagenet-r'`` or a list (kept as given)."""
    return list(_subset(wnids)[1]) if isinstance(wnids, str) else [str(w) for w in wnids]


def restrict_to_subset(scores: torch.Tensor, indices: Union[str, Sequence[int]]):
    """Keep the columns ``indices`` of ``(..., num_classes)`` scores (logits or softmax).

    The argmax of the result is the prediction among the subset's classes, as position in
    ``indices`` (the label space of the 200-class ImageNet-A / ImageNet-R folders).
    """
    return scores[..., subset_indices(indices)]


def corruption_errors(errors: Dict[Tuple[str, int], float],
                      alexnet_err: Optional[Dict[str, float]] = None) -> dict:
    """Corruption errors (CE) and their mean (mCE), Hendrycks & Dietterich 2019.

    ``errors[(corruption, severity)]`` is the model's top-1 error in [0, 1] on that
    corruption and severity. For each corruption ``c`` with an AlexNet entry,
    ``CE_c = sum_s E_{c,s} / sum_s E^AlexNet_{c,s}``; AlexNet's table gives its error
    averaged over the 5 severities, so ``sum_s E^AlexNet_{c,s} = n_s * ALEXNET_ERR[c]`` and
    ``CE_c = mean_s E_{c,s} / ALEXNET_ERR[c]``: exact with all 5 severities, and the same
    normalisation by the average when only some severities are evaluated. ``mCE`` is the
    mean of ``CE_c`` over the corruptions found. Returns fractions (multiply by 100 for the
    percentages papers quote): ``{'ce': {c: CE_c}, 'mce': float or None, 'skipped': [...]}``
    where ``skipped`` lists corruptions without an AlexNet entry (not in the mCE).
    """
    alexnet_err = ALEXNET_ERR if alexnet_err is None else alexnet_err
    by_c = defaultdict(list)
    for (c, _s), e in errors.items():
        by_c[c].append(float(e))
    ce, skipped = {}, []
    for c, errs in by_c.items():
        if c in alexnet_err:
            ce[c] = float(np.mean(errs)) / float(alexnet_err[c])
        else:
            skipped.append(c)
    mce = float(np.mean(list(ce.values()))) if ce else None
    return dict(ce=ce, mce=mce, skipped=sorted(skipped))


def _list_images(folder: str, extensions=IMG_EXTENSIONS) -> List[str]:
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(extensions) and osp.isfile(osp.join(folder, f)))


def _subdirs(folder: str) -> List[str]:
    return sorted(d for d in os.listdir(folder) if osp.isdir(osp.join(folder, d)))


def _add_meta_keys(pipeline: Sequence, keys: Sequence[str]) -> list:
    """Add ``keys`` to the ``meta_keys`` of the ``PackInputs`` step of a pipeline config."""
    from mmpretrain.datasets.transforms import PackInputs
    out = []
    for t in pipeline:
        if isinstance(t, dict) and str(t.get('type', '')).split('.')[-1] == 'PackInputs':
            t = dict(t)
            meta = tuple(t.get('meta_keys', PackInputs.DEFAULT_META_KEYS))
            t['meta_keys'] = meta + tuple(k for k in keys if k not in meta)
        out.append(t)
    return out


def _severity_dir(name: str) -> Optional[int]:
    try:
        return int(name)
    except ValueError:
        return None


@DATASETS.register_module()
class ImageNetC(BaseDataset):
    """ImageNet-C (Hendrycks & Dietterich, ICLR 2019) as released::

        <data_root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG

    e.g. ``data/imagenet-c/gaussian_noise/3/n01440764/ILSVRC2012_val_00000293.JPEG``.
    Labels follow the sorted class folder names (the standard ImageNet-1k order for the
    1000 wnids); ``num_classes`` is checked so that a missing folder cannot shift them.
    Every sample carries ``corruption`` and ``severity``; they are added to the
    ``meta_keys`` of the pipeline's ``PackInputs`` so :class:`ImageNetCMetric` sees them.

    Args:
        data_root: the ImageNet-C root.
        corruptions: the corruptions to evaluate (default: every corruption folder under
            ``data_root``, the 15 standard ones first in their usual order).
        severities: the severities to evaluate (default 1-5; missing ones are warned about).
        num_classes: the number of class folders expected (1000 for ImageNet-C); None
            skips the check.
    """

    def __init__(self, data_root: str, corruptions: Optional[Sequence[str]] = None,
                 severities: Sequence[int] = IMAGENET_C_SEVERITIES,
                 num_classes: Optional[int] = 1000, pipeline: Sequence = (),
                 extensions: Sequence[str] = IMG_EXTENSIONS, **kwargs):
        self.corruptions = list(corruptions) if corruptions is not None else None
        self.severities = [int(s) for s in severities]
        self.num_classes = num_classes
        self.extensions = tuple(e.lower() for e in extensions)
        pipeline = _add_meta_keys(pipeline, ('corruption', 'severity'))
        kwargs.setdefault('test_mode', True)
        super().__init__(ann_file='', data_root=data_root, pipeline=pipeline, **kwargs)

    def _corruption_dirs(self, root: str) -> List[str]:
        if self.corruptions is not None:
            missing = [c for c in self.corruptions if not osp.isdir(osp.join(root, c))]
            if missing:
                raise FileNotFoundError(
                    f'ImageNet-C corruption folder(s) {missing} not found under {root} '
                    '(expected <root>/<corruption>/<severity>/<wnid>/*.JPEG).')
            return self.corruptions
        found = [d for d in _subdirs(root)
                 if any(_severity_dir(s) is not None for s in _subdirs(osp.join(root, d)))]
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
        classes = sorted(set().union(*(_subdirs(d) for _, _, d in dirs)))
        if self.num_classes is not None and len(classes) != self.num_classes:
            raise ValueError(
                f'ImageNet-C under {root} has {len(classes)} class folders in all, expected '
                f'{self.num_classes}: labels are the positions of the sorted wnids, so every '
                'class folder must be there (or set num_classes=None for a custom set).')
        self._metainfo['classes'] = tuple(classes)
        label = {w: i for i, w in enumerate(classes)}
        data_list = []
        for c, s, d in dirs:
            for wnid in _subdirs(d):
                folder = osp.join(d, wnid)
                for f in _list_images(folder, self.extensions):
                    data_list.append(dict(img_path=osp.join(folder, f), gt_label=label[wnid],
                                          corruption=c, severity=s))
        if not data_list:
            raise RuntimeError(f'No images found under {root} ({self.extensions}).')
        return data_list


@DATASETS.register_module()
class WnidFolderDataset(BaseDataset):
    """Images in one folder per class, ``<data_root>/<data_prefix>/<wnid>/*``, labelled by a
    fixed list of wnids (ImageNet-A, ImageNet-R, ImageNet-Sketch, Stylized-ImageNet).

    Args:
        wnids: ``'imagenet-a'`` / ``'imagenet-r'`` (their 200 wnids; label = position in the
            list), a list of wnids, or None: the sorted folder names (the standard order when
            all 1000 ImageNet classes are there).
        num_classes: with ``wnids=None``, the number of class folders expected (1000 for
            ImageNet-Sketch and Stylized-ImageNet): a missing folder would shift every label
            after it, so it is an error. With a wnid list, folders may be missing (warned)
            but every folder must be in the list.
    """

    def __init__(self, data_root: str, data_prefix: Union[str, dict] = '',
                 wnids: Union[None, str, Sequence[str]] = None,
                 num_classes: Optional[int] = None, pipeline: Sequence = (),
                 extensions: Sequence[str] = IMG_EXTENSIONS, **kwargs):
        self.wnids = subset_wnids(wnids) if wnids is not None else None
        self.num_classes = num_classes
        self.extensions = tuple(e.lower() for e in extensions)
        kwargs.setdefault('test_mode', True)
        super().__init__(ann_file='', data_root=data_root, data_prefix=data_prefix,
                         pipeline=pipeline, **kwargs)

    def load_data_list(self):
        root = self.img_prefix
        if not osp.isdir(root):
            raise FileNotFoundError(f'{type(self).__name__}: {root} does not exist (expected '
                                    '<root>/<wnid>/<image>).')
        folders = _subdirs(root)
        if self.wnids is None:
            if self.num_classes is not None and len(folders) != self.num_classes:
                raise ValueError(
                    f'{root} has {len(folders)} class folders, expected {self.num_classes}: '
                    'labels are the positions of the sorted folder names, so every class '
                    'folder must be there.')
            classes = folders
        else:
            classes = self.wnids
            unknown = [f for f in folders if f not in set(classes)]
            if unknown:
                raise ValueError(
                    f'{root} has folders that are not among the {len(classes)} classes of '
                    f'this benchmark: {unknown[:10]}{" ..." if len(unknown) > 10 else ""}. '
                    'Check data_root and the wnids of the dataset config.')
            absent = [w for w in classes if w not in set(folders)]
            if absent:
                MMLogger.get_current_instance().warning(
                    f'{len(absent)} of the {len(classes)} class folders are missing under '
                    f'{root} (e.g. {absent[:5]}); the others keep their labels.')
        self._metainfo['classes'] = tuple(classes)
        label = {w: i for i, w in enumerate(classes)}
        data_list = []
        for wnid in folders:
            folder = osp.join(root, wnid)
            for f in _list_images(folder, self.extensions):
                data_list.append(dict(img_path=osp.join(folder, f), gt_label=label[wnid]))
        if not data_list:
            raise RuntimeError(f'No images found under {root} ({self.extensions}).')
        return data_list


def _pred_scores(data_sample: dict) -> torch.Tensor:
    score = data_sample.get('pred_score')
    if score is None:
        raise KeyError('The model output has no pred_score; the robustness metrics need the '
                       "classifier's per-class scores.")
    return score.detach().float().cpu()


def _gt_label(data_sample: dict) -> int:
    return int(torch.as_tensor(data_sample['gt_label']).reshape(-1)[0])


@METRICS.register_module()
class ImageNetCMetric(BaseMetric):
    """Top-1 per corruption and severity on ImageNet-C, corruption errors normalised by
    AlexNet's (``CE_<corruption>``, percent) and their mean, ``mCE`` (percent; lower is
    better); see :func:`corruption_errors`. Keys (prefix ``imagenet-c/``): ``mCE``,
    ``top1`` (mean over corruptions and severities), ``top1_<corruption>`` (mean over
    severities), ``CE_<corruption>``, ``top1_severity<s>`` (mean over corruptions). The full
    corruption x severity table is logged.

    The corruption and severity of a sample come from its metainfo (set by
    :class:`ImageNetC`), else from its path ``.../<corruption>/<severity>/<wnid>/<file>``.
    """
    default_prefix = 'imagenet-c'

    def __init__(self, alexnet_err: Optional[Dict[str, float]] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.alexnet_err = dict(ALEXNET_ERR if alexnet_err is None else alexnet_err)

    @staticmethod
    def _corruption_severity(data_sample: dict) -> Tuple[str, int]:
        if 'corruption' in data_sample and 'severity' in data_sample:
            return str(data_sample['corruption']), int(data_sample['severity'])
        path = data_sample.get('img_path')
        if path is None:
            raise KeyError('ImageNetCMetric needs the corruption and severity of each sample '
                           '(ImageNetC dataset) or its img_path.')
        parts = osp.normpath(path).split(os.sep)
        return parts[-4], int(parts[-3])

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            c, s = self._corruption_severity(ds)
            pred = int(_pred_scores(ds).argmax())
            self.results.append((c, s, pred == _gt_label(ds)))

    def compute_metrics(self, results: list) -> dict:
        counts = defaultdict(lambda: [0, 0])  # (c, s) -> [correct, total]
        for c, s, ok in results:
            counts[(c, s)][0] += int(ok)
            counts[(c, s)][1] += 1
        acc = {k: v[0] / v[1] for k, v in counts.items()}
        ces = corruption_errors({k: 1.0 - a for k, a in acc.items()}, self.alexnet_err)
        corruptions = sorted({c for c, _ in acc},
                             key=lambda c: (IMAGENET_C_CORRUPTIONS.index(c)
                                            if c in IMAGENET_C_CORRUPTIONS else 99, c))
        severities = sorted({s for _, s in acc})
        metrics = {}
        if ces['mce'] is not None:
            metrics['mCE'] = 100.0 * ces['mce']
        metrics['top1'] = 100.0 * float(np.mean(list(acc.values())))
        for c in corruptions:
            metrics[f'top1_{c}'] = 100.0 * float(np.mean([a for (c2, _), a in acc.items()
                                                          if c2 == c]))
            if c in ces['ce']:
                metrics[f'CE_{c}'] = 100.0 * ces['ce'][c]
        for s in severities:
            metrics[f'top1_severity{s}'] = 100.0 * float(np.mean(
                [a for (_, s2), a in acc.items() if s2 == s]))

        logger = MMLogger.get_current_instance()
        header = f'{"corruption":<18}' + ''.join(f'{"s" + str(s):>8}' for s in severities) \
            + f'{"mean":>8}{"CE":>8}'
        lines = [header]
        for c in corruptions:
            row = f'{c:<18}' + ''.join(
                f'{100 * acc[(c, s)]:8.2f}' if (c, s) in acc else f'{"-":>8}'
                for s in severities)
            row += f'{metrics[f"top1_{c}"]:8.2f}'
            row += f'{metrics[f"CE_{c}"]:8.2f}' if f'CE_{c}' in metrics else f'{"-":>8}'
            lines.append(row)
        logger.info('ImageNet-C top-1 (%) per corruption and severity:\n' + '\n'.join(lines))
        known = [c for c in corruptions if c in self.alexnet_err]
        if ces['mce'] is not None and len(known) < len(IMAGENET_C_CORRUPTIONS):
            logger.warning(f'mCE is over {len(known)} of the {len(IMAGENET_C_CORRUPTIONS)} '
                           'standard corruptions only: not comparable with published mCE.')
        if ces['skipped']:
            logger.info(f'Not in the mCE (no AlexNet error): {ces["skipped"]}')
        if any(len([s for (c2, s) in acc if c2 == c]) < len(IMAGENET_C_SEVERITIES)
               for c in known):
            logger.warning('Some corruptions miss severities; their CE is normalised by '
                           "AlexNet's error averaged over all 5 severities.")
        return metrics


@METRICS.register_module()
class SubsetAccuracy(BaseMetric):
    """Top-k accuracy (percent) among a subset of the model's classes.

    The model predicts over all its classes (1000 for ImageNet-1k); the scores are
    restricted to ``indices`` before the arg-max, and the ground-truth labels are positions
    in ``indices`` (0-199 for ImageNet-A / ImageNet-R with :class:`WnidFolderDataset`).

    Args:
        indices: ``'imagenet-a'``, ``'imagenet-r'`` or a list of class indices.
        topk: the k of top-k, default (1, ).
        prefix: default: the subset's name, else ``subset``.
    """
    default_prefix = 'subset'

    def __init__(self, indices: Union[str, Sequence[int]], topk: Sequence[int] = (1, ),
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        if prefix is None and isinstance(indices, str):
            prefix = indices.lower().replace('_', '-')
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.indices = subset_indices(indices)
        self.topk = tuple(int(k) for k in (topk if isinstance(topk, (list, tuple))
                                           else (topk, )))

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        kmax = min(max(self.topk), len(self.indices))
        for ds in data_samples:
            scores = _pred_scores(ds)
            if scores.shape[-1] <= max(self.indices):
                raise ValueError(
                    f'SubsetAccuracy: the model predicts {scores.shape[-1]} classes but the '
                    f'subset needs class index {max(self.indices)}; use a model of the '
                    '1000 ImageNet-1k classes (or a matching `indices` list).')
            scores = restrict_to_subset(scores, self.indices)
            top = scores.topk(kmax).indices.tolist()
            self.results.append((top, _gt_label(ds)))

    def compute_metrics(self, results: list) -> dict:
        n = len(results)
        metrics = {}
        for k in self.topk:
            hits = sum(gt in top[:k] for top, gt in results)
            metrics[f'top{k}'] = 100.0 * hits / max(n, 1)
        return metrics

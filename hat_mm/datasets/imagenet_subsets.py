"""The 200-class subsets of ImageNet-A (Hendrycks et al., CVPR 2021) and ImageNet-R
(Hendrycks et al., ICCV 2021), read from the tables timm ships (``timm/data/_info/``):
``imagenet_{a,r}_indices.txt`` (their ImageNet-1k class indices) and
``imagenet_{a,r}_synsets.txt`` (their WordNet ids). Both lists are sorted, so the position of a
wnid in its list is the label a class-folder dataset gives the released folders, and the
position of an index is the same class among the 1000 logits.
"""
import pkgutil
from functools import lru_cache
from typing import Sequence, Tuple, Union

SUBSETS = ('imagenet-a', 'imagenet-r')


@lru_cache(maxsize=None)
def _table(subset: str, kind: str) -> tuple:
    """One of timm's packaged tables, read the way timm's ``ImageNetInfo`` reads its own."""
    filename = f"_info/{_check_subset(subset).replace('-', '_')}_{kind}.txt"
    values = pkgutil.get_data('timm.data', filename).decode('utf-8').split()
    return tuple(int(v) for v in values) if kind == 'indices' else tuple(values)


def _check_subset(subset: str) -> str:
    key = subset.lower().replace('_', '-')
    if key not in SUBSETS:
        raise ValueError(f'unknown class subset {subset!r}; known: {list(SUBSETS)} (or give '
                         'the list itself)')
    return key


def subset_indices(indices: Union[str, Sequence[int]]) -> Tuple[int, ...]:
    """``'imagenet-a'`` / ``'imagenet-r'`` -> their 200 ImageNet-1k indices; a list as is."""
    return _table(indices, 'indices') if isinstance(indices, str) else \
        tuple(int(i) for i in indices)


def subset_wnids(wnids: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``'imagenet-a'`` / ``'imagenet-r'`` -> their 200 wnids; a list as is."""
    return _table(wnids, 'synsets') if isinstance(wnids, str) else tuple(wnids)


IMAGENET_A_INDICES = subset_indices('imagenet-a')
IMAGENET_A_WNIDS = subset_wnids('imagenet-a')
IMAGENET_R_INDICES = subset_indices('imagenet-r')
IMAGENET_R_WNIDS = subset_wnids('imagenet-r')

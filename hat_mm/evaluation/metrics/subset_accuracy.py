"""Top-k accuracy among a subset of the model's classes (ImageNet-A / ImageNet-R)."""
from typing import Optional, Sequence, Union

import torch
from mmpretrain.evaluation import Accuracy
from mmpretrain.registry import METRICS

from ...datasets.imagenet_subsets import subset_indices


def restrict_to_subset(scores: torch.Tensor, indices: Union[str, Sequence[int]]):
    """Keep the columns ``indices`` of ``(..., num_classes)`` scores (logits or softmax).

    The arg-max of the result is the prediction among the subset's classes, as a position in
    ``indices`` (the label space of the 200-class ImageNet-A / ImageNet-R folders).
    """
    return scores[..., list(subset_indices(indices))]


@METRICS.register_module()
class SubsetAccuracy(Accuracy):
    """mmpretrain's ``Accuracy`` on the scores restricted to a subset of the classes.

    The model predicts over all its classes (1000 for ImageNet-1k); the scores are
    restricted to ``indices`` before mmpretrain's top-k, and the ground-truth labels are
    positions in ``indices`` (0-199 for ImageNet-A / ImageNet-R with ``WnidFolderDataset``).

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
        super().__init__(topk=topk, thrs=None, collect_device=collect_device, prefix=prefix)
        self.indices = subset_indices(indices)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        restricted = []
        for ds in data_samples:
            score = ds.get('pred_score')
            if score is None:
                raise KeyError('SubsetAccuracy needs the per-class scores of the model '
                               '(pred_score) to restrict them.')
            if score.shape[-1] <= max(self.indices):
                raise ValueError(
                    f'SubsetAccuracy: the model predicts {score.shape[-1]} classes but the '
                    f'subset needs class index {max(self.indices)}; use a model of the 1000 '
                    'ImageNet-1k classes (or a matching `indices` list).')
            restricted.append(dict(pred_score=restrict_to_subset(score.detach().float(),
                                                                 self.indices),
                                   gt_label=ds['gt_label']))
        super().process(data_batch, restricted)

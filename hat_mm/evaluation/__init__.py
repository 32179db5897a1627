"""Evaluation extras: robustness benchmarks (ImageNet-C/A/R, Sketch, Stylized-ImageNet).

Importing registers their datasets and metrics in mmpretrain's registries.
"""
from .robustness import (ALEXNET_ERR, IMAGENET_A_INDICES, IMAGENET_A_WNIDS,
                         IMAGENET_C_CORRUPTIONS, IMAGENET_R_INDICES, IMAGENET_R_WNIDS,
                         ImageNetC, ImageNetCMetric, SubsetAccuracy, WnidFolderDataset,
                         corruption_errors, restrict_to_subset, subset_indices,
                         subset_wnids)

__all__ = ['ALEXNET_ERR', 'IMAGENET_A_INDICES', 'IMAGENET_A_WNIDS', 'IMAGENET_C_CORRUPTIONS',
           'IMAGENET_R_INDICES', 'IMAGENET_R_WNIDS', 'ImageNetC', 'ImageNetCMetric',
           'SubsetAccuracy', 'WnidFolderDataset', 'corruption_errors', 'restrict_to_subset',
           'subset_indices', 'subset_wnids']

"""Metrics of the robustness benchmarks (ImageNet-C mCE, 200-class ImageNet-A/R accuracy),
registered in mmpretrain's ``METRICS``; their datasets are in :mod:`hat_mm.datasets`."""
from .metrics import (ALEXNET_ERR, ImageNetCMetric, SubsetAccuracy, corruption_errors,
                      restrict_to_subset)

__all__ = ['ALEXNET_ERR', 'ImageNetCMetric', 'SubsetAccuracy', 'corruption_errors',
           'restrict_to_subset']

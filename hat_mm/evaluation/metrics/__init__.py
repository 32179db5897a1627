from .imagenet_c_metric import ALEXNET_ERR, ImageNetCMetric, corruption_errors
from .subset_accuracy import SubsetAccuracy, restrict_to_subset

__all__ = ['ALEXNET_ERR', 'ImageNetCMetric', 'corruption_errors', 'SubsetAccuracy',
           'restrict_to_subset']

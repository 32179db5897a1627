from .hat_classifier import HATClassifierMixin, HATImageClassifier, HATTimmClassifier
from .hat_ddp import HATDistributedDataParallel

__all__ = ['HATClassifierMixin', 'HATImageClassifier', 'HATTimmClassifier',
           'HATDistributedDataParallel']

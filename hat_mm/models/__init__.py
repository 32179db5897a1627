from .distillation import DistilledImageClassifier, HATDistilledImageClassifier
from .hat_classifier import HATClassifierMixin, HATImageClassifier, HATTimmClassifier
from .hat_ddp import HATDistributedDataParallel
from .token_labeling import TokenLabelDataPreprocessor
from .volo import HATVOLOClassifier, VOLOClassifier

__all__ = ['HATClassifierMixin', 'HATImageClassifier', 'HATTimmClassifier',
           'HATDistributedDataParallel', 'VOLOClassifier', 'HATVOLOClassifier',
           'DistilledImageClassifier', 'HATDistilledImageClassifier',
           'TokenLabelDataPreprocessor']

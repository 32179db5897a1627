"""Models of hat-mm, registered in mmpretrain's ``MODELS`` (losses first: the classifiers
build them from config)."""
from .losses import DistillationLoss, SymmetricKLLoss, TokenLabelLoss  # noqa: I001
from .erasing_preprocessor import EraseAfterMixDataPreprocessor
from .distillation import DistilledImageClassifier, HATDistilledImageClassifier
from .hat_classifier import HATClassifierMixin, HATImageClassifier, HATTimmClassifier
from .hat_ddp import HATDistributedDataParallel
from .token_label_preprocessor import TokenLabelDataPreprocessor
from .timm_vit_init import TimmInitDistilledVisionTransformer, TimmInitVisionTransformer
from .volo import HATVOLOClassifier, VOLOClassifier

__all__ = ['DistillationLoss', 'SymmetricKLLoss', 'TokenLabelLoss', 'HATClassifierMixin',
           'HATImageClassifier', 'HATTimmClassifier', 'HATDistributedDataParallel',
           'VOLOClassifier', 'HATVOLOClassifier', 'DistilledImageClassifier',
           'HATDistilledImageClassifier', 'TokenLabelDataPreprocessor',
           'EraseAfterMixDataPreprocessor', 'TimmInitVisionTransformer',
           'TimmInitDistilledVisionTransformer']

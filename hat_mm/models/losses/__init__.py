"""The losses of hat-mm, registered in mmpretrain's ``MODELS``."""
from .distillation_loss import DistillationLoss
from .symmetric_kl_loss import SymmetricKLLoss
from .token_label_loss import TokenLabelLoss

__all__ = ['DistillationLoss', 'SymmetricKLLoss', 'TokenLabelLoss']

"""Data transforms of hat-mm (token labeling for VOLO, timm-style evaluation crops).

Importing this package registers the transforms into mmpretrain's ``TRANSFORMS``.
"""
from .token_label import (LoadTokenLabel, PaddedCenterCrop, TokenLabelRandomResizedCrop,
                          token_label_path)

__all__ = ['LoadTokenLabel', 'PaddedCenterCrop', 'TokenLabelRandomResizedCrop',
           'token_label_path']

"""Pipeline transforms, registered in mmpretrain's ``TRANSFORMS``."""
from .padded_center_crop import PaddedCenterCrop
from .token_label_maps import LoadTokenLabel, TokenLabelRandomResizedCrop, token_label_path

__all__ = ['LoadTokenLabel', 'PaddedCenterCrop', 'TokenLabelRandomResizedCrop',
           'token_label_path']

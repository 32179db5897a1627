"""Pipeline transforms, registered in mmpretrain's ``TRANSFORMS``."""
from .image_loading import LoadImageFromFile, UnreadableImageError
from .padded_center_crop import PaddedCenterCrop
from .random_interpolation import (RandomInterpolationRandAugment,
                                   RandomInterpolationResizedCrop, draw_interpolation)
from .token_label_geometric import (TokenLabelRotate, TokenLabelShear, TokenLabelTranslate,
                                    warp_token_label)
from .token_label_maps import LoadTokenLabel, TokenLabelRandomResizedCrop, token_label_path

__all__ = ['LoadImageFromFile', 'UnreadableImageError', 'LoadTokenLabel', 'PaddedCenterCrop',
           'RandomInterpolationRandAugment', 'RandomInterpolationResizedCrop',
           'draw_interpolation',
           'TokenLabelRandomResizedCrop', 'token_label_path', 'TokenLabelRotate',
           'TokenLabelShear', 'TokenLabelTranslate', 'warp_token_label']

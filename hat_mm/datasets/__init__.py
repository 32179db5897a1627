"""Datasets and transforms of hat-mm, registered in mmpretrain's ``DATASETS`` / ``TRANSFORMS``:
the robustness test sets (ImageNet-C, the 200-class ImageNet-A/R, class-folder sets such as
ImageNet-Sketch) and the token-labeling transforms of VOLO."""
from .class_folders import (IMAGENET_C_CORRUPTIONS, IMAGENET_C_SEVERITIES, ImageNetC,
                            WnidFolderDataset)
from .imagenet_subsets import (IMAGENET_A_INDICES, IMAGENET_A_WNIDS, IMAGENET_R_INDICES,
                               IMAGENET_R_WNIDS, subset_indices, subset_wnids)
from .transforms import (LoadTokenLabel, PaddedCenterCrop, TokenLabelRandomResizedCrop,
                         token_label_path)

__all__ = ['IMAGENET_C_CORRUPTIONS', 'IMAGENET_C_SEVERITIES', 'ImageNetC', 'WnidFolderDataset',
           'IMAGENET_A_INDICES', 'IMAGENET_A_WNIDS', 'IMAGENET_R_INDICES', 'IMAGENET_R_WNIDS',
           'subset_indices', 'subset_wnids', 'LoadTokenLabel', 'PaddedCenterCrop',
           'TokenLabelRandomResizedCrop', 'token_label_path']

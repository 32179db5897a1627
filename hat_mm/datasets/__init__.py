"""Datasets, transforms and data checks of hat-mm, registered in mmpretrain's ``DATASETS`` /
``TRANSFORMS``: the robustness test sets (ImageNet-C, the 200-class ImageNet-A/R, class-folder
sets such as ImageNet-Sketch), the token-labeling transforms of VOLO, timm's random training
interpolation (crop and RandAugment), image loading that names unreadable files, the opt-in
skipping of unreadable training images, and the checks of annotation files run before
training."""
from .annotation_check import check_annotation_file, check_annotation_files
from .class_folders import (IMAGENET_C_CORRUPTIONS, IMAGENET_C_SEVERITIES, ImageNetC,
                            WnidFolderDataset)
from .imagenet_subsets import (IMAGENET_A_INDICES, IMAGENET_A_WNIDS, IMAGENET_R_INDICES,
                               IMAGENET_R_WNIDS, subset_indices, subset_wnids)
from .skip_unreadable import (SkipUnreadableImages, UnreadableImagesHook,
                              enable_skip_unreadable_images)
from .transforms import (LoadImageFromFile, LoadTokenLabel, PaddedCenterCrop,
                         RandomInterpolationRandAugment, RandomInterpolationResizedCrop,
                         TokenLabelRandomResizedCrop, UnreadableImageError, token_label_path)

__all__ = ['IMAGENET_C_CORRUPTIONS', 'IMAGENET_C_SEVERITIES', 'ImageNetC', 'WnidFolderDataset',
           'IMAGENET_A_INDICES', 'IMAGENET_A_WNIDS', 'IMAGENET_R_INDICES', 'IMAGENET_R_WNIDS',
           'subset_indices', 'subset_wnids', 'LoadImageFromFile', 'UnreadableImageError',
           'LoadTokenLabel', 'PaddedCenterCrop', 'RandomInterpolationRandAugment',
           'RandomInterpolationResizedCrop', 'TokenLabelRandomResizedCrop',
           'token_label_path', 'check_annotation_file', 'check_annotation_files',
           'SkipUnreadableImages', 'UnreadableImagesHook', 'enable_skip_unreadable_images']

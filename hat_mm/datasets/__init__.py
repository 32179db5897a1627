"""Data transforms of hat-mm (token labeling for VOLO, timm-style evaluation crops, image
loading that names unreadable files), checks of annotation files, and the opt-in skipping of
unreadable training images.

Importing this package registers the transforms into mmpretrain's ``TRANSFORMS``.
"""
from .annotation_check import check_annotation_file, check_annotation_files
from .image_loading import LoadImageFromFile, UnreadableImageError
from .skip_unreadable import (SkipUnreadableImages, UnreadableImagesHook,
                              enable_skip_unreadable_images)
from .token_label import (LoadTokenLabel, PaddedCenterCrop, TokenLabelRandomResizedCrop,
                          token_label_path)

__all__ = ['LoadImageFromFile', 'UnreadableImageError', 'LoadTokenLabel', 'PaddedCenterCrop',
           'TokenLabelRandomResizedCrop', 'token_label_path', 'check_annotation_file',
           'check_annotation_files', 'SkipUnreadableImages', 'UnreadableImagesHook',
           'enable_skip_unreadable_images']

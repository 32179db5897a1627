# The official scripts' training augmentation, shared by the paper configs (they use these
# names through {{_base_.*}}; the names are their own because the mmpretrain recipes beside
# this file already define train_pipeline and data_preprocessor, and mmengine refuses a key
# that two bases define).
#
# Random erasing as timm's and tlt's prefetcher runs it: on the normalised batch after
# mixup/cutmix, --reprob 0.25, --remode pixel (N(0, 1) per pixel), --recount 1, one block of
# 2% to 1/3 of the image (hat_mm/models/erasing_preprocessor.py); so no pipeline erases.
official_erasing = dict(probability=0.25, mode='pixel', max_count=1)

# Mixup/cutmix as timm's batch-mode Mixup of the official scripts (--mixup 0.8 --cutmix 1.0
# --mixup-prob 1.0 --mixup-switch-prob 0.5 --mixup-mode batch): one lam and one choice per
# batch, each image mixed with the reversed batch, on the batch before the erasing
# (hat_mm/models/erasing_preprocessor.py). So the paper configs set model.train_cfg=None
# (no mmpretrain batch augments, which pair each image with a random permutation).
official_data_preprocessor = dict(type='EraseAfterMixDataPreprocessor', mixup_alpha=0.8,
                                  cutmix_alpha=1.0, mix_prob=1.0, switch_prob=0.5,
                                  erasing=official_erasing)

# The training interpolation of the official scripts, --train-interpolation random (their
# default): bilinear or bicubic drawn for each image in the crop and for each application of
# RandAugment's geometric operations (hat_mm/datasets/transforms/random_interpolation.py).
train_interpolation = 'random'

# mmpretrain's Swin/DeiT recipe pipeline (timm's rand-m9-mstd0.5-inc1, ImageNet-mean fill)
# without its RandomErasing, with the official random interpolation.
imagenet_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomInterpolationResizedCrop', scale=224, backend='pillow',
         interpolation=train_interpolation),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomInterpolationRandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation=train_interpolation)),
    dict(type='PackInputs'),
]

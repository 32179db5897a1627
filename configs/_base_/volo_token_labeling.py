# VOLO + token labeling on ImageNet-1k at 224 (Yuan et al. 2021, VOLO's recipe through the
# `tlt` token-labeling package), shared by configs/hat_volo_*.py; those also inherit the HAT
# overlay ./hat.py. Model: timm's VOLO in hat_mm/models/volo.py (VOLOClassifier; HATRunner
# turns it into HATVOLOClassifier). Data/schedule: mmpretrain's Swin/DeiT ImageNet recipe
# (AdamW, no decay on norms/biases/position tables, RandAugment m9-mstd0.5-inc1, erasing 0.25,
# mixup 0.8 / cutmix 1.0, label smoothing 0.1), with the token-labeling parts:
#   - score maps: one <token_label_root>/<class>/<image>.pt per training image (tlt's format:
#     float16 [2, k, H, W] = top-k teacher logits / class indices). The maps released with
#     the VOLO code (NFNet-F6 teacher, `label_top5_train_nfnet`) or
#     tools/dataset_converters/make_token_labels.py;
#   - RandAugment first, on the whole image, as tlt runs it (before the crop), with its
#     geometric operations moving the score map along (TokenLabelRotate/Shear/Translate);
#   - TokenLabelRandomResizedCrop + RandomFlip record where the crop lies; the data
#     preprocessor cuts the dense targets out with roi_align (label_size = img_size // 16)
#     and mixes images and targets (timm's batch-mode mixup/cutmix, done there because the
#     dense targets must follow the images).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './official_settings.py',
]

data_root = 'data/imagenet'
token_label_root = 'data/imagenet/label_top5_train_nfnet'
num_classes = 1000
img_size = 224

model = dict(
    type='VOLOClassifier',
    model_name='volo_d1_224',
    pretrained=False,
    num_classes=num_classes,
    drop_path_rate=0.1,
    # tlt TokenLabelCrossEntropy with VOLO's --dense-weight 0.5, --cls-weight 1.0; MixToken on
    token_label_loss=dict(type='TokenLabelLoss', dense_weight=0.5, cls_weight=1.0,
                          ground_truth=False),
    mix_token=True,
    data_preprocessor=dict(
        type='mmpretrain.TokenLabelDataPreprocessor',
        num_classes=num_classes,
        label_size=img_size // 16,  # VOLO --token-label-size 14 at 224
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        switch_prob=0.5,
        label_smoothing=0.1,
        # random erasing after the mixing, as tlt's prefetcher does it
        erasing={{_base_.official_erasing}}),
)

# timm's RandAugment 'rand-m9-mstd0.5-inc1' (mmpretrain's 'timm_increasing' policies) with
# the geometric operations replaced by their token-label-moving versions.
token_label_randaug_policies = [
    dict(type='AutoContrast'),
    dict(type='Equalize'),
    dict(type='Invert'),
    dict(type='TokenLabelRotate', magnitude_range=(0, 30)),
    dict(type='Posterize', magnitude_range=(4, 0)),
    dict(type='Solarize', magnitude_range=(256, 0)),
    dict(type='SolarizeAdd', magnitude_range=(0, 110)),
    dict(type='ColorTransform', magnitude_range=(0, 0.9)),
    dict(type='Contrast', magnitude_range=(0, 0.9)),
    dict(type='Brightness', magnitude_range=(0, 0.9)),
    dict(type='Sharpness', magnitude_range=(0, 0.9)),
    dict(type='TokenLabelShear', magnitude_range=(0, 0.3), direction='horizontal'),
    dict(type='TokenLabelShear', magnitude_range=(0, 0.3), direction='vertical'),
    dict(type='TokenLabelTranslate', magnitude_range=(0, 0.45), direction='horizontal'),
    dict(type='TokenLabelTranslate', magnitude_range=(0, 0.45), direction='vertical'),
]
# The resolution-free parts of the training pipeline, shared with the high-resolution
# fine-tuning configs (hat_volo_d1_384.py, ...): RandAugment before the crop, as tlt's
# transforms run (flip, RandAugment, crop; the flip commutes with the others in
# distribution, so it stays after the crop here), then the flip (random erasing is in the
# data preprocessor, after the mixing).
token_label_randaugment = dict(
    type='RandomInterpolationRandAugment', policies=token_label_randaug_policies,
    num_policies=2, total_level=10, magnitude_level=9, magnitude_std=0.5,
    hparams=dict(pad_val=[104, 116, 124], interpolation={{_base_.train_interpolation}}))
train_augments = dict(type='Compose', transforms=[
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
])
train_pipeline = [
    {{_base_.official_image_loading}},  # PIL's decode, as the official loader
    dict(type='LoadTokenLabel', label_root=token_label_root),
    token_label_randaugment,
    dict(type='TokenLabelRandomResizedCrop', scale=img_size, backend='pillow',
         interpolation={{_base_.train_interpolation}}),
    train_augments,
    dict(type='PackInputs', algorithm_keys=('token_label', 'token_label_box')),
]
# Official evaluation: the crop_pct of the official models/volo.py default config (0.96 for
# volo_d1-d3, 1.15 for volo_d4/d5, whatever the resolution), as its validate.py uses it:
# resize the short side to floor(img_size / crop_pct), centre crop img_size (padded with
# black when crop_pct > 1, as torchvision's CenterCrop does). D1 at 224: 233.
test_pipeline = [
    {{_base_.official_image_loading}},  # PIL's decode, as the official loader
    dict(type='ResizeEdge', scale=233, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='PaddedCenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=128,  # per GPU; 8 GPUs -> 1024 (VOLO: -b 128 on 8 GPUs)
    drop_last=True,  # tlt's create_token_label_loader (is_training): the last incomplete batch
    num_workers=8,  # the official train.py's -j default, per GPU (mmpretrain's recipe: 5)
    collate_fn={{_base_.official_collate}},  # one tensor per batch (./official_settings.py)
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=8, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# Official: cuDNN autotuning on; seeds 42 + rank (./official_settings.py).
env_cfg = {{_base_.official_env_cfg}}
randomness = {{_base_.official_randomness}}

# timm's AdamW as the official script builds it: lr per 1024 images scaled linearly,
# weight decay 0.05, none on 1-D parameters and on VOLO's no_weight_decay() = pos_embed,
# cls_token; no gradient clipping (train.py default).
# fused=True: torch's one-kernel AdamW (the same update as the for-each AdamW the official
# code runs; tests/test_fast_paths.py), measured 5-6% faster per HAT step on an H100.
# constructor: one parameter group per setting, not per parameter (the same update; AdamW
# then runs a few kernels a step instead of two per parameter;
# hat_mm/engine/merged_param_groups.py).
optim_wrapper = dict(
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(lr=1.6e-3, weight_decay=0.05, fused=True),
    paramwise_cfg=dict(custom_keys={
        '.pos_embed': dict(decay_mult=0.0),
        '.cls_token': dict(decay_mult=0.0),
    }),
    clip_grad=None,
)
auto_scale_lr = dict(enable=True, base_batch_size=1024)
# timm's CosineLRScheduler as train.py steps it, one LR per epoch
# (hat_mm/engine/timm_cosine_lr.py): 20 warm-up epochs from 1e-6, cosine to 1e-5 over 300
# epochs, 10 cool-down epochs (train.py defaults; the VOLO README: "train volo_d1 on 224 with
# 310 epoch").
param_scheduler = [dict(type='TimmCosineLR', cosine_epochs=300, warmup_epochs=20,
                        warmup_lr=1e-6, min_lr=1e-5)]
train_cfg = dict(by_epoch=True, max_epochs=310, val_interval=1)

# Official: the best top-1 checkpoint and the 3 most recent (./official_settings.py).
default_hooks = dict(checkpoint={{_base_.official_checkpoint}})

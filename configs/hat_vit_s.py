# ViT-S (DeiT-Small) + HAT on ImageNet-1k (paper: 80.9 top-1; 80.1 without HAT).
#   bash tools/dist_train.sh configs/hat_vit_s.py 8
# The paper trains ViTs with DeiT's hyper-parameters (Touvron et al. 2021) in the official
# code's conventions: total batch 1024 (8 GPUs x 128), lr 1e-3 for a total batch of 1024
# scaled linearly (DeiT's 5e-4 x 1024 / 512), weight decay 0.05, drop-path 0.1, no gradient
# clipping, 5 warm-up epochs from 1e-6, cosine to 1e-5 at epoch 300, 10 cool-down epochs;
# HAT defaults from configs/_base_/hat.py. Data and augmentation (RandAugment m9-mstd0.5-inc1,
# erasing 0.25, mixup 0.8, cutmix 1.0, label smoothing 0.1) come from mmpretrain's recipe.
_base_ = [
    'mmpretrain::deit/deit-small_4xb256_in1k.py',
    './_base_/hat.py',
]

model = dict(backbone=dict(drop_path_rate=0.1))
train_dataloader = dict(batch_size=128)  # per GPU; 8 GPUs -> 1024

optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.05), clip_grad=None)
auto_scale_lr = dict(enable=True, base_batch_size=1024)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=310)

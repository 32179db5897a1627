# Swin-B + HAT on ImageNet-1k (paper: 84.0 top-1; 83.5 without HAT).
#   bash tools/dist_train.sh configs/hat_swin_b.py 8
# The paper trains the Swin variants with Swin's own hyper-parameters (Liu et al. 2021) in
# the official code's conventions: total batch 1024 (8 GPUs x 128), lr 1e-3 for a total batch
# of 1024 scaled linearly, weight decay 0.05, drop-path 0.5, clip-grad 5.0, 20 warm-up epochs
# from 1e-6, cosine to 1e-5 at epoch 300, 10 cool-down epochs; HAT defaults from
# configs/_base_/hat.py. Data and augmentation come from mmpretrain's Swin-B recipe.
_base_ = [
    'mmpretrain::swin_transformer/swin-base_16xb64_in1k.py',
    './_base_/hat.py',
]

model = dict(backbone=dict(drop_path_rate=0.5))
train_dataloader = dict(batch_size=128)  # per GPU; 8 GPUs -> 1024

optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
auto_scale_lr = dict(enable=True, base_batch_size=1024)

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=310)

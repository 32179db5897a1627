# ViT-B (DeiT-Base) + HAT on ImageNet-1k (paper: 83.2 top-1; 82.0 without HAT).
#   bash tools/dist_train.sh configs/hat_vit_b.py 8 --amp   # fp16, as the official run
# Recipe, normalisation (mean = std = 127.5, as timm's vit_base_patch16_224), schedule, test
# resize 248 and best-checkpoint saving: configs/_base_/hat_vit.py. No EMA: the official
# --model-ema is off and mmpretrain's DeiT-B recipe's EMAHook is not used.
_base_ = ['./_base_/hat_vit.py']

model = dict(backbone=dict(arch='deit-base'), head=dict(in_channels=768))

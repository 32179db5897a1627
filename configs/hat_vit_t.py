# ViT-T (DeiT-Tiny) + HAT on ImageNet-1k (paper: 73.3 top-1; 72.2 without HAT).
#   bash tools/dist_train.sh configs/hat_vit_t.py 8 --amp   # fp16, as the official run
# Recipe, normalisation (mean = std = 127.5, as timm's vit_tiny_patch16_224), schedule, test
# resize 248 and best-checkpoint saving: configs/_base_/hat_vit.py.
_base_ = ['./_base_/hat_vit.py']

model = dict(backbone=dict(arch='deit-tiny'), head=dict(in_channels=192))

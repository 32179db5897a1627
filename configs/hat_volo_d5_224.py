# VOLO-D5 at 224 + HAT on ImageNet-1k (paper: 86.3 top-1; 86.1 without HAT), 295.5M params.
# The VOLO README gives commands for D1-D3 only (D2: lr 1e-3, drop-path 0.2; D3: lr 1e-3,
# drop-path 0.5). For D5 this config uses lr 8e-4 per 1024 images and drop-path 0.75:
# UNVERIFIED, from memory of the settings table of the VOLO paper (Yuan et al. 2021), not
# checked against a source here; everything else as configs/hat_volo_d1_224.py (AdamW,
# weight decay 0.05, 20 warm-up epochs, 300 + 10 epochs, token labeling with label size 14,
# dense weight 0.5).
# Evaluation as the official validate.py: the default crop_pct of volo_d5 in the official
# models/volo.py, 1.15 at every resolution: bicubic resize floor(224 / 1.15) = 194, centre
# crop 224 with black padding (torchvision's CenterCrop). timm's later default_cfg of
# volo_d5_224 has crop_pct 0.96 (resize 233) instead.
#   bash tools/dist_train.sh configs/hat_volo_d5_224.py 8 --amp   # fp16, as the official run
_base_ = [
    './_base_/volo_token_labeling.py',
    './_base_/hat.py',
]

model = dict(model_name='volo_d5_224', drop_path_rate=0.75)
optim_wrapper = dict(optimizer=dict(lr=8e-4))

test_pipeline = [
    {{_base_.official_image_loading}},  # PIL's decode, as the official loader
    dict(type='ResizeEdge', scale=194, edge='short', backend='pillow',
         interpolation='bicubic'),  # floor(224 / 1.15)
    dict(type='PaddedCenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# VOLO-D5 at 224 + HAT on ImageNet-1k (paper: 86.3 top-1; 86.1 without HAT), 295.5M params.
#   bash tools/dist_train.sh configs/hat_volo_d5_224.py 8
# The VOLO README gives commands for D1-D3 only (D2: lr 1e-3, drop-path 0.2; D3: lr 1e-3,
# drop-path 0.5). For D5 this config uses lr 8e-4 per 1024 images and drop-path 0.75:
# UNVERIFIED, from memory of the settings table of the VOLO paper (Yuan et al. 2021), not
# checked against a source here; everything else as configs/hat_volo_d1_224.py (AdamW,
# weight decay 0.05, 20 warm-up epochs, 300 + 10 epochs, token labeling with label size 14,
# dense weight 0.5). Evaluation: timm's default_cfg of volo_d5_224 (crop_pct 0.96).
# The official HAT validate.py would instead use its model-level default crop_pct of 1.15
# for volo_d5 at every resolution unless --crop-pct is given.
_base_ = [
    './_base_/volo_token_labeling.py',
    './_base_/hat.py',
]
custom_imports = dict(imports=['hat_mm', 'hat_mm.datasets', 'hat_mm.models.volo'],
                      allow_failed_imports=False)

model = dict(model_name='volo_d5_224', drop_path_rate=0.75)
optim_wrapper = dict(optimizer=dict(lr=8e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 8e-4, by_epoch=True, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20, end=300,
         convert_to_iter_based=True),
]

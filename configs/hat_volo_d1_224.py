# VOLO-D1 at 224 + HAT on ImageNet-1k (paper: 84.5 top-1; 84.2 without HAT), 26.6M params.
#   bash tools/dist_train.sh configs/hat_volo_d1_224.py 8 --amp   # fp16, as the official run
# VOLO's command for volo_d1 (sail-sg/volo README): 8 GPUs x 128, --lr 1.6e-3 (per 1024
# images, scaled linearly), --drop-path 0.1, token labeling with --token-label-size 14,
# dense weight 0.5; train.py defaults: AdamW, weight decay 0.05, 20 warm-up epochs from 1e-6,
# cosine to 1e-5, 300 + 10 cool-down epochs, no clipping. HAT defaults from
# configs/_base_/hat.py (adversarial for the first 200 epochs). Evaluation: the official
# models/volo.py default crop_pct of volo_d1, 0.96 (bicubic: resize 233, centre crop 224).
# Needs the token-label score maps in `token_label_root`
# (see configs/_base_/volo_token_labeling.py).
_base_ = [
    './_base_/volo_token_labeling.py',
    './_base_/hat.py',
]

model = dict(model_name='volo_d1_224', drop_path_rate=0.1)

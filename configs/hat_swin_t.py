# Swin-T + HAT on ImageNet-1k: the paper's Swin-T run (82.0 top-1; 81.2 without HAT).
#   bash tools/dist_train.sh configs/hat_swin_t.py 8 --amp   # fp16, as the official run
# Official command: 8 GPUs x 256 images, --lr 1e-3 (scaled x 2048/1024 = 2e-3),
# --weight-decay 0.05, --drop-path 0.2, --adv-epochs 200 --adv-iters 3 --adv-eps 0.00784314
# --adv-kl-weight 0.01 --adv-ce-weight 3.0 (configs/_base_/hat.py), and --clip-grad 1.0,
# which the official HAT loop never applies (so no clipping here; see _base_/hat_swin.py).
# Shared with Swin-S/B (recipe, schedule, no clipping, decayed bias tables, test resize 248,
# best-checkpoint saving): configs/_base_/hat_swin.py. Fidelity notes: docs/fidelity.md.
_base_ = ['./_base_/hat_swin.py']

model = dict(backbone=dict(arch='tiny', drop_path_rate=0.2), head=dict(in_channels=768))
train_dataloader = dict(batch_size=256)  # per GPU; 8 GPUs -> 2048

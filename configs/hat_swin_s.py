# Swin-S + HAT on ImageNet-1k (paper: 83.3 top-1; 83.0 without HAT).
#   bash tools/dist_train.sh configs/hat_swin_s.py 8 --amp   # fp16, as the official run
# The paper trains the Swin variants with Swin's own hyper-parameters (Liu et al. 2021) in the
# official code's conventions: 8 GPUs x 128, lr 1e-3 per 1024 images, weight decay 0.05,
# drop-path 0.3; no gradient clipping (the official HAT loop never applies --clip-grad).
# Everything else: configs/_base_/hat_swin.py. Fidelity notes: docs/fidelity.md.
_base_ = ['./_base_/hat_swin.py']

model = dict(backbone=dict(arch='small', drop_path_rate=0.3), head=dict(in_channels=768))

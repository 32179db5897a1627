# VOLO's fine-tuning at a higher resolution, from the 224 model, with HAT: shared by
# configs/hat_volo_d1_384.py, hat_volo_d5_448.py and hat_volo_d5_512.py, which add what
# depends on the model and the resolution (timm model name, drop-path, token-label size,
# pipelines, batch size, the 224 checkpoint).
# The command for volo_d1 at 384 (sail-sg/volo README): --lr 8e-6 (per 1024 images),
# --min-lr 4e-6, --weight-decay 1e-8, --warmup-epochs 5, --epochs 30 (+ the 10 cool-down
# epochs of the script: "finetune on 384 with 40 epoch"), --ground-truth
# (TokenLabelGTCrossEntropy); the 224 weights with the position embedding resized
# bicubically on loading.
_base_ = [
    './volo_token_labeling.py',
    './hat.py',
]

model = dict(token_label_loss=dict(ground_truth=True))  # TokenLabelGTCrossEntropy

optim_wrapper = dict(optimizer=dict(lr=8e-6, weight_decay=1e-8))
param_scheduler = [dict(type='TimmCosineLR', cosine_epochs=30, warmup_epochs=5,
                        warmup_lr=1e-6, min_lr=4e-6)]  # + 10 cool-down epochs at 4e-6
train_cfg = dict(max_epochs=40)

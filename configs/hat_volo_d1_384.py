# VOLO-D1 at 384 + HAT on ImageNet-1k (paper: 85.5 top-1; 85.2 without HAT).
# Parameters: 26.6M params as the paper counts them, 26.78M with the 24x24 position table.
#   bash tools/dist_train.sh configs/hat_volo_d1_384.py 8 \
#       --amp --cfg-options load_from=<hat_volo_d1_224 checkpoint>
# VOLO trains every model at 224 first and then fine-tunes it at the higher resolution, with
# the schedule of the volo_d1 384 command (configs/_base_/volo_finetune_hires.py: lr 8e-6 per
# 1024 images, 40 epochs, ground-truth token-label loss) and the pre-training drop-path.
# 8 GPUs x 64 images as in that command.
# HAT: the paper does not say how its high-resolution rows were fine-tuned; this config keeps
# the HAT step for the whole fine-tuning (the official script's --adv-epochs 200 exceeds its
# 40 epochs). Token label size = 384 // 16 = 24 (the token grid of VOLO at 384).
# Evaluation as the official validate.py: the default crop_pct of volo_d1 in the official
# models/volo.py, 0.96 at every resolution (bicubic: resize floor(384 / 0.96) = 400, centre
# crop 384); timm's later default_cfg of volo_d1_384 has crop_pct 1.0 instead.
_base_ = ['./_base_/volo_finetune_hires.py']  # schedule, token-label loss, HAT

img_size = 384
load_from = 'work_dirs/hat_volo_d1_224/epoch_310.pth'  # the 224 model (set it to yours)

model = dict(
    model_name='volo_d1_384',
    drop_path_rate=0.1,
    data_preprocessor=dict(label_size=img_size // 16),
)

train_pipeline = [
    {{_base_.official_image_loading}},  # PIL's decode, as the official loader
    dict(type='LoadTokenLabel', label_root={{_base_.token_label_root}}),
    {{_base_.token_label_randaugment}},  # on the whole image, moving the score map
    dict(type='TokenLabelRandomResizedCrop', scale=img_size, backend='pillow',
         interpolation={{_base_.train_interpolation}}),
    {{_base_.train_augments}},  # flip (_base_/volo_token_labeling.py)
    dict(type='PackInputs', algorithm_keys=('token_label', 'token_label_box')),
]
test_pipeline = [
    {{_base_.official_image_loading}},  # PIL's decode, as the official loader
    dict(type='ResizeEdge', scale=400, edge='short', backend='pillow',
         interpolation='bicubic'),  # floor(384 / 0.96)
    dict(type='PaddedCenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# VOLO-D5 at 448 + HAT on ImageNet-1k (paper: 87.2 top-1; 87.0 without HAT).
# Parameters: 295.5M params as the paper counts them, 295.91M with the 28x28 position table.
#   bash tools/dist_train.sh configs/hat_volo_d5_448.py 8 \
#       --amp --cfg-options load_from=<hat_volo_d5_224 checkpoint>
# VOLO trains every model at 224 first and then fine-tunes it at the higher resolution, with
# the schedule of the volo_d1 384 command (configs/_base_/volo_finetune_hires.py: lr 8e-6 per
# 1024 images, 40 epochs, ground-truth token-label loss) and the pre-training drop-path.
# For D5 the README has no command: the volo_d1/d3 fine-tuning settings are used with the D5
# pre-training drop-path (0.75, unverified, see hat_volo_d5_224.py) and 32 images per GPU
# (memory-driven choice; volo_d3 at 448 used 30; the LR is scaled linearly anyway).
# HAT: the paper does not say how its high-resolution rows were fine-tuned; this config keeps
# the HAT step for the whole fine-tuning (the official script's --adv-epochs 200 exceeds its
# 40 epochs). Token label size = 448 // 16 = 28 (the token grid of VOLO at 448).
# Evaluation as the official validate.py: the default crop_pct of volo_d5 in the official
# models/volo.py, 1.15 at every resolution (= timm's default_cfg of volo_d5_448): bicubic
# resize floor(448 / 1.15) = 389, centre crop 448 with black padding (torchvision's CenterCrop).
_base_ = ['./_base_/volo_finetune_hires.py']  # schedule, token-label loss, HAT

img_size = 448
load_from = 'work_dirs/hat_volo_d5_224/epoch_310.pth'  # the 224 model (set it to yours)

model = dict(
    model_name='volo_d5_448',
    drop_path_rate=0.75,
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
    dict(type='ResizeEdge', scale=389, edge='short', backend='pillow',
         interpolation='bicubic'),  # floor(448 / 1.15)
    dict(type='PaddedCenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

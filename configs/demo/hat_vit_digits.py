# The embedded demo: a small ViT trained with HAT on scikit-learn's handwritten digits
# (real 8x8 scans upscaled to 32x32), written to disk in ImageNet layout by
#   python tools/dataset_converters/make_digits_imagenet.py data/digits
# so mmpretrain's real ImageNet loading path runs. A few minutes on 2 CPU cores:
#   python tools/train.py configs/demo/hat_vit_digits.py
# A user with ImageNet uses configs/hat_vit_t.py (data_root='data/imagenet') instead.
_base_ = [
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/hat.py',
]

data_root = 'data/digits'
num_classes = 10
max_epochs = 30
hat = dict(adv_epochs=20)  # adversarial for 2/3 of training, as 200 of 300 in the paper

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(embed_dims=96, num_layers=4, num_heads=3, feedforward_channels=192),
        img_size=32,
        patch_size=4,
        drop_path_rate=0.05),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=num_classes,
        in_channels=96,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    # soft targets, as on ImageNet (mixup/cutmix there)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.2)]),
)

# pixel statistics of the digits images (gray, replicated to RGB)
data_preprocessor = dict(
    num_classes=num_classes, mean=[79.0] * 3, std=[87.0] * 3, to_rgb=True)

classes = [f'digit_{i}' for i in range(num_classes)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.7, 1.0),
         aspect_ratio_range=(0.85, 1.18), backend='pillow'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root=data_root, split='train',
                 metainfo=dict(classes=classes), pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root=data_root, split='val',
                 metainfo=dict(classes=classes), pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0,
        custom_keys={'.cls_token': dict(decay_mult=0.0), '.pos_embed': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=3,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=3, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=2, save_last=True),
)
randomness = dict(seed=0, deterministic=False)

# Shared base of the COCO transfer configs (the paper's COCO rows): Cascade Mask R-CNN with a
# (HAT-pretrained) Swin backbone, FPN, GIoU 4conv1fc box heads, multi-scale + crop training,
# AdamW, 3x schedule (36 epochs). The official Swin detection config
# (cascade_mask_rcnn_swin_*_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py,
# mmdet 2.x) ported to mmdet 3.x. It is not meant to be trained directly: the
# ../cascade-mask-rcnn_hat-swin-{t,s,b}-p4-w7_fpn_giou-4conv1f_ms-crop-3x_coco.py configs
# set the Swin size, its drop-path rate, the FPN input widths and the pretrained checkpoint.
#
# mmdet's own pieces are inherited. mmdet's `swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py`
# has the same pipeline and optimizer, but it cannot sit next to the Cascade Mask R-CNN model
# file in `_base_` (both define `model`, and mmengine refuses a key defined by two sibling
# bases), so the pipeline / optimizer / schedule of the official config are written below.
#
# Without COCO at hand, `python tools/dataset_converters/make_tiny_coco.py data/tiny_coco`
# writes a small synthetic set in COCO's layout and prints the --cfg-options that point a
# config at it; tests/test_detection_transfer.py (tiny_run_options) also shrinks the scales
# and proposal counts so that a few iterations run on a CPU.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# `hat_mm` registers CheckPretrainedKeysHook (and, importing mmpretrain's models, the backbone).
custom_imports = dict(imports=['hat_mm'], allow_failed_imports=False)

# Overridden by the size-specific configs (and on the command line with
# --cfg-options model.backbone.init_cfg.checkpoint=...).
pretrained = None

# The GIoU 4conv1fc box head of one cascade stage; only the target stds differ per stage.
# (Names starting with `__` are helpers that mmengine leaves out of the config.)
__bbox_head = dict(
    type='Shared4Conv1FCBBoxHead',  # 4 shared 3x3 convs + 1 shared fc
    in_channels=256,
    conv_out_channels=256,
    fc_out_channels=1024,
    roi_feat_size=7,
    num_classes=80,
    bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                    target_stds=[0.1, 0.1, 0.2, 0.2]),
    reg_class_agnostic=False,
    reg_decoded_bbox=True,  # GIoU is computed on decoded boxes
    norm_cfg=dict(type='SyncBN', requires_grad=True),  # reverted to BN without DDP
    loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=10.0))

model = dict(
    backbone=dict(
        _delete_=True,  # replaces mmdet's ResNet-50
        # The very implementation the HAT pretraining trains (mmpretrain's), so a
        # pretraining checkpoint loads key for key.
        type='mmpretrain.SwinTransformer',
        arch='tiny',
        img_size=224,
        window_size=7,
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),  # output norms norm0..norm3, all built fresh (see below)
        # Always pad feature maps to whole windows and shift them, as the official detection
        # backbone does (mmpretrain's default shrinks windows for classification inputs).
        pad_small_map=True,
        with_cp=False,  # gradient checkpointing: set True to save GPU memory
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768], out_channels=256, num_outs=5),
    roi_head=dict(bbox_head=[
        __bbox_head,
        dict(__bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                                          target_means=[0., 0., 0., 0.],
                                          target_stds=[0.05, 0.05, 0.1, 0.1])),
        dict(__bbox_head, bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                                          target_means=[0., 0., 0., 0.],
                                          target_stds=[0.033, 0.033, 0.067, 0.067])),
    ]))

# Training augmentation of DETR / Sparse R-CNN used by the official Swin detection configs:
# flip, then either (a) multi-scale resize, short side 480..800 step 32, long side <= 1333, or
# (b) resize to short side 400/500/600, crop an absolute-size 384..600 region, then (a).
__ms_scales = [(1333, s) for s in range(480, 801, 32)]  # (long, short) = (w, h) in mmdet 3.x
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=__ms_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize',
                     scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=__ms_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
# 16 images per iteration: 8 GPUs x 2 images.
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

# 3x schedule: 36 epochs, LR x0.1 after epochs 27 and 33, 500 linear warm-up iterations
# (mmdet 2.x schedule_1x's warm-up, as in the official config).
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]

# AdamW, no weight decay on the parameters whose names contain 'absolute_pos_embed',
# 'relative_position_bias_table' or 'norm', as the official config's custom_keys: that is
# the backbone's LayerNorms (mmpretrain's Swin names them norm*, as the official Swin does).
# The SyncBN layers of the box heads (named `bn`) and all biases keep the weight decay, as
# they do in the official run (norm_decay_mult=0 would exempt the SyncBN layers too).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                   weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))

# The learning rate above is for 16 images per iteration; `tools/train.py --auto-scale-lr`
# scales it linearly for other totals.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Stop before training when the pretrained checkpoint does not fit the backbone (missing,
# unexpected or mis-shaped keys). The output norms of stages 0-2 are new in detection, and
# norm3 is built fresh as well: the official Swin detection backbone adds one new norm per
# stage and does not load the classifier's final `norm` (stored as norm3 by pretraining).
custom_hooks = [
    dict(type='CheckPretrainedKeysHook', allow_missing=['norm0.', 'norm1.', 'norm2.'],
         reinit=['norm3']),
    # long runs (README "Long runs"): stop on NaN/inf, resume with the same random numbers
    dict(type='NonFiniteCheckHook'),
    dict(type='RNGStateHook'),
]
# checkpoints written atomically, old ones removed only after the new one is complete
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))

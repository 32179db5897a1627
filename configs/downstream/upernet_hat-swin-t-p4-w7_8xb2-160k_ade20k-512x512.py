# UperNet + Swin-T on ADE20K (150 classes), 512x512 crops, 160k iterations, 8 GPUs x 2 images:
# the official Swin segmentation recipe (mmseg 1.x port, `mmseg::swin/...`) with the backbone
# pretrained by HAT (configs/hat_swin_t.py). Paper (ADE20K table): 60M params, 945G FLOPs,
# mIoU(MS) 46.1 with the plain ImageNet Swin-T, 46.7 with the HAT-pretrained one.
#
# The backbone is mmpretrain's SwinTransformer, the same implementation pretraining trains, so
# the pretraining checkpoint (keys `backbone.*`, `head.*`) loads as is (prefix 'backbone.');
# the output norms (norm0-norm3) are built fresh. CheckPretrainedKeysHook stops before the
# first iteration if anything else does not match.
#
# Train (the backbone starts from `pretrained` below, the HAT run's last checkpoint; another
# one with --cfg-options model.backbone.init_cfg.checkpoint=/path/to/checkpoint.pth):
#   bash tools/dist_train.sh \
#       configs/downstream/upernet_hat-swin-t-p4-w7_8xb2-160k_ade20k-512x512.py 8
# Test, single scale (mIoU, whole image resized to 2048x512):
#   bash tools/dist_test.sh \
#       configs/downstream/upernet_hat-swin-t-p4-w7_8xb2-160k_ade20k-512x512.py \
#       work_dirs/upernet_hat-swin-t-p4-w7_8xb2-160k_ade20k-512x512/iter_160000.pth 8
# Test, multi-scale + flip (mIoU(MS), the paper's number): the same command plus `--tta`
# (tools/test.py then tests `tta_model` wrapping the model on `tta_pipeline`, defined below).
# Data: ADEChallengeData2016 in data/ade/ADEChallengeData2016 (images/{training,validation}/*.jpg,
# annotations/{training,validation}/*.png), or --cfg-options
# {train,val,test}_dataloader.dataset.data_root=/path. A tiny synthetic set for smoke tests:
#   python tools/dataset_converters/make_tiny_ade20k.py data/tiny_ade20k
_base_ = ['mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py']

custom_imports = dict(imports=['hat_mm'], allow_failed_imports=False)  # + mmpretrain's models

# the last checkpoint of `bash tools/dist_train.sh configs/hat_swin_t.py 8`
pretrained = 'work_dirs/hat_swin_t/epoch_310.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch='tiny',  # embed_dims 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24)
        img_size=224,
        window_size=7,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        # windows never shrink on small maps; pad them instead (the official dense code)
        pad_small_map=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# norm3 is built fresh, as the official Swin segmentation backbone does (it does not load the
# classifier's final `norm`, stored as norm3 by pretraining); norm0-2 are new.
custom_hooks = [
    dict(type='CheckPretrainedKeysHook', allow_missing=['norm0.', 'norm1.', 'norm2.'],
         reinit=['norm3']),
    dict(type='NonFiniteCheckHook'),  # long runs (README "Long runs"): stop on NaN/inf
]
# checkpoints written atomically, old ones removed only after the new one is complete
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))

# Multi-scale + flip testing as the official code's --aug-test: the 2048x512 test scale times
# each ratio (keep ratio), each with and without a horizontal flip; SegTTAModel (`tta_model`,
# inherited) averages the softmax scores at the original image size.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(2048 * r), int(512 * r)), keep_ratio=True)
             for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]

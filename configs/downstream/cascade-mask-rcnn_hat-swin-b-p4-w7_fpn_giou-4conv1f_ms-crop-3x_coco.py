# COCO instance segmentation with Cascade Mask R-CNN and a HAT-pretrained Swin-B backbone
# (the paper's COCO rows; the official Swin detection config
# cascade_mask_rcnn_swin_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py
# ported to mmdet 3.x): FPN, three GIoU 4conv1fc box heads, multi-scale + crop training,
# AdamW lr 1e-4 / wd 0.05, 36 epochs (LR steps at 27 and 33), 16 images per iteration
# (8 GPUs x 2). Everything shared lives in
# _base_/cascade-mask-rcnn_hat-swin_fpn_giou-4conv1f_ms-crop-3x_coco.py.
#
# Paper (COCO val2017, 145M params, 982G FLOPs):
#   Swin-B baseline 51.9 / 45.0, +HAT 52.8 / 45.6 (box AP / mask AP)
#
# Pretrain the backbone first (configs/hat_swin_b.py writes work_dirs/hat_swin_b/epoch_310.pth),
# put COCO 2017 in data/coco (annotations/instances_{train,val}2017.json, train2017/,
# val2017/), then (8 GPUs x 2 images; `work_dirs/<config name>/` gets logs and checkpoints)
#   CONFIG=configs/downstream/cascade-mask-rcnn_hat-swin-b-p4-w7_fpn_giou-4conv1f_ms-crop-3x_coco.py
#   bash tools/dist_train.sh $CONFIG 8
#   bash tools/dist_train.sh $CONFIG 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=/path/to/hat_pretraining.pth
#   bash tools/dist_test.sh $CONFIG work_dirs/$(basename $CONFIG .py)/epoch_36.pth 8
# (bbox and segm mAP). Other GPU counts: add --auto-scale-lr to scale the LR linearly.
_base_ = ['./_base_/cascade-mask-rcnn_hat-swin_fpn_giou-4conv1f_ms-crop-3x_coco.py']

# HAT pretraining checkpoint: keys backbone.* (mmpretrain SwinTransformer) and head.*;
# the backbone is loaded with prefix='backbone.' (the classification head is dropped).
pretrained = 'work_dirs/hat_swin_b/epoch_310.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[128, 256, 512, 1024]))  # C, 2C, 4C, 8C

# UperNet + Swin-S on ADE20K (150 classes), 512x512 crops, 160k iterations, 8 GPUs x 2 images:
# the official Swin segmentation recipe (mmseg 1.x port, `mmseg::swin/...`) with the backbone
# pretrained by HAT (configs/hat_swin_s.py). Paper (ADE20K table): 81M params, 1038G FLOPs,
# mIoU(MS) 49.5 with the plain ImageNet Swin-S, 49.7 with the HAT-pretrained one.
#
# The backbone is mmpretrain's SwinTransformer, the same implementation pretraining trains, so
# the pretraining checkpoint (keys `backbone.*`, `head.*`) loads as is (prefix 'backbone.');
# the output norms (norm0-norm3) are built fresh. CheckPretrainedKeysHook stops before the
# first iteration if anything else does not match.
#
# Train (the backbone starts from `pretrained` below, the HAT run's last checkpoint; another
# one with --cfg-options model.backbone.init_cfg.checkpoint=/path/to/checkpoint.pth):
#   bash tools/dist_train.sh \
#       configs/downstream/upernet_hat-swin-s-p4-w7_8xb2-160k_ade20k-512x512.py 8
# Test, single scale (mIoU, whole image resized to 2048x512):
#   bash tools/dist_test.sh \
#       configs/downstream/upernet_hat-swin-s-p4-w7_8xb2-160k_ade20k-512x512.py \
#       work_dirs/upernet_hat-swin-s-p4-w7_8xb2-160k_ade20k-512x512/iter_160000.pth 8
# Test, multi-scale + flip (mIoU(MS), the paper's number): the same command plus `--tta`
# (tools/test.py then tests `tta_model` wrapping the model on `tta_pipeline`, defined below).
# Data: ADEChallengeData2016 in data/ade/ADEChallengeData2016 (images/{training,validation}/*.jpg,
# annotations/{training,validation}/*.png), or --cfg-options
# {train,val,test}_dataloader.dataset.data_root=/path. A tiny synthetic set for smoke tests:
#   python tools/dataset_converters/make_tiny_ade20k.py data/tiny_ade20k
# Everything but the backbone size and its checkpoint comes from the Swin-T config (as in
# mmseg, whose Swin-S/B configs inherit the Swin-T one).
_base_ = ['./upernet_hat-swin-t-p4-w7_8xb2-160k_ade20k-512x512.py']

# the last checkpoint of `bash tools/dist_train.sh configs/hat_swin_s.py 8`
pretrained = 'work_dirs/hat_swin_s/epoch_310.pth'

model = dict(
    backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)))

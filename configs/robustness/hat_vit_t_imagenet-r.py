# ImageNet-R (renditions; Hendrycks et al., ICCV 2021) for the ViT-T + HAT model: top-1
# among ImageNet-R's 200 classes, the 1000-way prediction restricted to those 200 classes
# (hat_mm.datasets.IMAGENET_R_INDICES, the list of the benchmark's own evaluation code; it
# differs from ImageNet-A's). Another model: change `_base_` (e.g. '../hat_swin_t.py').
#
#   python tools/test.py configs/robustness/hat_vit_t_imagenet-r.py CKPT
#
# Folder layout (imagenet-r.tar unpacked):
#   data/imagenet-r/<wnid>/*.jpg        200 wnid folders, e.g. data/imagenet-r/n01443537/
# Labels are the positions of the folders' wnids in ImageNet-R's sorted 200-wnid list
# (hat_mm.datasets.IMAGENET_R_WNIDS); other folders are an error.
# Test pipeline: the model config's (resize + centre crop 224).
_base_ = ['../hat_vit_t.py']

data_root = 'data/imagenet-r'
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='WnidFolderDataset',
        data_root=data_root,
        wnids='imagenet-r',
        pipeline={{_base_.test_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(_delete_=True, type='SubsetAccuracy', indices='imagenet-r', topk=(1, ))

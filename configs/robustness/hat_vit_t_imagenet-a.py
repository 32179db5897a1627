# ImageNet-A (natural adversarial examples; Hendrycks et al., CVPR 2021) for the ViT-T + HAT
# model: top-1 among ImageNet-A's 200 classes, the 1000-way prediction restricted to those
# 200 classes (hat_mm.datasets.IMAGENET_A_INDICES, the list of the benchmark's own
# evaluation code). Another model: change `_base_` (e.g. '../hat_swin_t.py').
#
#   python tools/test.py configs/robustness/hat_vit_t_imagenet-a.py CKPT
#
# Folder layout (imagenet-a.tar unpacked):
#   data/imagenet-a/<wnid>/*.jpg        200 wnid folders, e.g. data/imagenet-a/n01498041/
# Labels are the positions of the folders' wnids in ImageNet-A's sorted 200-wnid list
# (hat_mm.datasets.IMAGENET_A_WNIDS); other folders (README.txt is ignored) are an error.
# Test pipeline: the model config's (resize + centre crop 224).
_base_ = ['../hat_vit_t.py']

data_root = 'data/imagenet-a'
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='WnidFolderDataset',
        data_root=data_root,
        wnids='imagenet-a',
        pipeline={{_base_.test_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(_delete_=True, type='SubsetAccuracy', indices='imagenet-a', topk=(1, ))

# ImageNet-Sketch (Wang et al., NeurIPS 2019) for the ViT-T + HAT model: plain top-1 (and
# top-5) over the 1000 ImageNet classes. Another model: change `_base_`.
#
#   python tools/test.py configs/robustness/hat_vit_t_imagenet-sketch.py CKPT
#
# Folder layout (the release unpacked; it unpacks as sketch/, point data_root at it):
#   data/imagenet-sketch/<wnid>/*.JPEG     all 1000 wnid folders, e.g. .../n01440764/
# Labels are the positions of the sorted wnid folder names (the standard ImageNet-1k order),
# so all 1000 folders must be there (checked). Test pipeline: the model config's.
_base_ = ['../hat_vit_t.py']

data_root = 'data/imagenet-sketch'
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='WnidFolderDataset',
        data_root=data_root,
        wnids=None,
        num_classes=1000,
        pipeline={{_base_.test_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, 5), prefix='imagenet-sketch')

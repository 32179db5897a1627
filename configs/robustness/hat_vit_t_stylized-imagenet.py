# Stylized-ImageNet validation set (Geirhos et al., ICLR 2019) for the ViT-T + HAT model:
# plain top-1 (and top-5) over the 1000 ImageNet classes. Another model: change `_base_`.
#
#   python tools/test.py configs/robustness/hat_vit_t_stylized-imagenet.py CKPT
#
# Folder layout (Stylized-ImageNet as its creation scripts write it):
#   data/stylized-imagenet/val/<wnid>/*     all 1000 wnid folders, e.g. .../val/n01440764/
# Labels are the positions of the sorted wnid folder names (the standard ImageNet-1k order),
# so all 1000 folders must be there (checked). Test pipeline: the model config's (the
# images are 224x224; resize + centre crop as for ImageNet validation).
_base_ = ['../hat_vit_t.py']

data_root = 'data/stylized-imagenet'
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='WnidFolderDataset',
        data_root=data_root,
        data_prefix='val',
        wnids=None,
        num_classes=1000,
        pipeline={{_base_.test_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, 5),
                      prefix='stylized-imagenet')

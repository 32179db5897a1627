# ImageNet-C (Hendrycks & Dietterich, ICLR 2019) for the ViT-T + HAT model: top-1 per
# corruption and severity, and mCE (corruption errors normalised by AlexNet's; lower is
# better). Another model: change `_base_` to its config (e.g. '../hat_swin_t.py').
#
#   python tools/test.py configs/robustness/hat_vit_t_imagenet-c.py CKPT --out mce.json
#   ... --cfg-options test_dataloader.dataset.corruptions="['fog','snow']"   # a subset
#
# Folder layout (the released tar files unpacked into one root):
#   data/imagenet-c/<corruption>/<severity 1-5>/<wnid>/*.JPEG
#   e.g. data/imagenet-c/gaussian_noise/3/n01440764/ILSVRC2012_val_00000293.JPEG
# with the 15 corruptions gaussian_noise shot_noise impulse_noise defocus_blur glass_blur
# motion_blur zoom_blur snow frost fog brightness contrast elastic_transform pixelate
# jpeg_compression (extra folders such as speckle_noise are evaluated, outside the mCE) and
# all 1000 class folders in each. The images are already 224x224: they get the centre crop
# only, as in the benchmark's reference evaluation (no resize). Data set and metric:
# hat_mm/datasets/class_folders.py (ImageNetC), hat_mm/evaluation/metrics/ (ImageNetCMetric).
_base_ = ['../hat_vit_t.py']

data_root = 'data/imagenet-c'
imagenet_c_pipeline = [
    {{_base_.official_image_loading}},  # PIL's decode, as the official loader
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),  # ImageNetC adds 'corruption' and 'severity' to meta_keys
]
test_dataloader = dict(
    batch_size=64,
    dataset=dict(
        _delete_=True,
        type='ImageNetC',
        data_root=data_root,
        corruptions=None,  # None: every corruption folder under data_root
        severities=(1, 2, 3, 4, 5),
        num_classes=1000,
        pipeline=imagenet_c_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = dict(_delete_=True, type='ImageNetCMetric')

"""``--cfg-options`` that run the project's real configs for a few iterations on the generated
data sets (tools/dataset_converters), shared by the tests and ``tools/analysis/gpu_check.py``:

- :func:`pretrain_options`: a HAT pretraining config (``configs/hat_*.py``) on ImageNet-layout
  data (``make_digits_imagenet.py``), training only;
- :func:`coco_options`: a Cascade Mask R-CNN config on ``make_tiny_coco.py`` data, at 1/6 of the
  real scales, with fewer proposals and RoIs;
- :func:`ade20k_options` / :func:`ade20k_tta_options`: an UperNet config on
  ``make_tiny_ade20k.py`` data with 64x64 crops, and its multi-scale + flip test scaled alike.
"""
import os.path as osp

# configs/downstream/upernet_*: the ratios of the multi-scale test (mIoU(MS)) of the config
ADE20K_TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _loader_options(data_root, splits, workers):
    opts = []
    for split in splits:
        opts += [f'{split}_dataloader.dataset.data_root={data_root}',
                 f'{split}_dataloader.num_workers={workers}',
                 f'{split}_dataloader.persistent_workers={workers > 0}']
    return opts


def pretrain_options(data_root, images, batch_size, epochs=1, workers=0):
    """``images`` training images in batches of ``batch_size`` per GPU, ``epochs`` epochs
    (HAT's adversarial phase), a checkpoint and a log line every iteration. Validation is off
    (``tools/train.py --no-validate``)."""
    return _loader_options(data_root, ['train'], workers) + [
        f'train_dataloader.dataset.indices={images}',
        f'train_dataloader.batch_size={batch_size}',
        f'train_cfg.max_epochs={epochs}',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1',
    ]


def coco_options(data_root, pretrained=None, workers=0):
    """Two iterations of 2 images (both augmentation policies), validation on 2 images with
    every detection kept (score_thr 0) so that COCO's evaluation has results to score.
    ``pretrained``: the HAT checkpoint of the backbone (None: random backbone)."""
    ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
    opts = _loader_options(data_root, ('train', 'val', 'test'), workers)
    opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    opts += ['train_dataloader.batch_size=2', 'train_dataloader.dataset.indices=4',
             'val_dataloader.dataset.indices=2', 'test_dataloader.dataset.indices=2']
    # Both augmentation policies, at 1/6 of the real scales (pipeline indices: 0 load,
    # 1 annotations, 2 flip, 3 RandomChoice; test pipeline: 0 load, 1 resize).
    policy = 'train_dataloader.dataset.pipeline.3.transforms'
    opts += [f'{policy}.0.0.scales=[(192,112),(192,128)]',
             f'{policy}.1.0.scales=[(192,112)]',
             f'{policy}.1.1.crop_size=(80,112)',
             f'{policy}.1.2.scales=[(192,112),(192,128)]',
             'val_dataloader.dataset.pipeline.1.scale=(192,128)',
             'test_dataloader.dataset.pipeline.1.scale=(192,128)']
    opts += ['model.train_cfg.rpn_proposal.max_per_img=32',
             *[f'model.train_cfg.rcnn.{i}.sampler.num=16' for i in range(3)],
             'model.test_cfg.rpn.max_per_img=16', 'model.test_cfg.rcnn.score_thr=0.0',
             'model.test_cfg.rcnn.max_per_img=10']
    opts += ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
             'default_hooks.logger.interval=1',
             'default_hooks.checkpoint.save_optimizer=False']
    opts.append('model.backbone.init_cfg=None' if pretrained is None else
                f'model.backbone.init_cfg.checkpoint={pretrained}')
    return opts


def ade20k_options(data_root, checkpoint=None, workers=0):
    """Two iterations of 2 images (64x64 crops), validation after them; ``checkpoint``: the
    HAT checkpoint of the backbone (None: as the config says)."""
    opts = _loader_options(data_root, ('train', 'val', 'test'), workers)
    opts += [
        'train_dataloader.batch_size=2',
        'train_dataloader.dataset.pipeline.2.scale=(256,64)',  # RandomResize
        'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',  # RandomCrop
        'model.data_preprocessor.size=(64,64)',
        'val_dataloader.dataset.pipeline.1.scale=(256,64)',  # Resize
        'test_dataloader.dataset.pipeline.1.scale=(256,64)',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
    ]
    if checkpoint is not None:
        opts.append(f'model.backbone.init_cfg.checkpoint={checkpoint}')
    return opts


def ade20k_tta_options():
    """The config's six test scales (2048x512 x ratio) shrunk as :func:`ade20k_options` shrinks
    the single one (2048x512 -> 256x64), for ``tools/test.py --tta``."""
    return [f'tta_pipeline.1.transforms.0.{i}.scale=({int(256 * r)},{int(64 * r)})'
            for i, r in enumerate(ADE20K_TTA_RATIOS)]

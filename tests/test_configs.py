"""The paper configs: inheritance, HAT settings, the paper's architectures, and what the
official code (jiawangbai/HAT on timm) actually ran (docs/fidelity.md)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import hat_mm  # noqa: F401
from hat_mm.engine import apply_hat

from .helpers import paper_config
from .runner_utils import ROOT

# params (M, the paper's table), per-GPU batch, drop-path, warm-up epochs
PAPER = {
    'hat_vit_t': (5.7, 128, 0.1, 5),
    'hat_vit_s': (22.1, 128, 0.1, 5),
    'hat_vit_b': (86.6, 128, 0.1, 5),
    'hat_swin_t': (28.3, 256, 0.2, 20),
    'hat_swin_s': (49.6, 128, 0.3, 20),
    'hat_swin_b': (87.8, 128, 0.5, 20),
}
ALL_PAPER_CONFIGS = sorted(osp.splitext(osp.basename(p))[0]
                           for p in glob.glob(osp.join(ROOT, 'configs', 'hat_*.py')))
ROBUSTNESS_CONFIGS = sorted(osp.splitext(osp.basename(p))[0] for p in
                            glob.glob(osp.join(ROOT, 'configs', 'robustness', 'hat_*.py')))
IMAGENET_MEAN, IMAGENET_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def merged(name):
    return apply_hat(Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py')))


@pytest.mark.parametrize('name', sorted(PAPER))
def test_pretraining_config(name):
    params_m, batch, drop_path, warmup = PAPER[name]
    cfg = paper_config(osp.join(ROOT, 'configs', f'{name}.py'), 'HATImageClassifier')
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    # lr is given for a total batch of 1024 and scaled linearly (timm convention)
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=1024)
    assert cfg.train_cfg.max_epochs == 310
    # timm's CosineLRScheduler as the official train.py steps it (per epoch, absolute LRs)
    assert cfg.param_scheduler == [dict(type='TimmCosineLR', cosine_epochs=300,
                                        warmup_epochs=warmup, warmup_lr=1e-6, min_lr=1e-5)]
    # the recipe's data pipeline and batch augments are inherited
    # the official loader's timm batch-mode mixup/cutmix, in the data preprocessor
    assert cfg.model.train_cfg is None  # so no mmpretrain batch augments
    pre = cfg.get('data_preprocessor') or cfg.model.data_preprocessor
    assert (pre.mixup_alpha, pre.cutmix_alpha, pre.mix_prob, pre.switch_prob) == \
        (0.8, 1.0, 1.0, 0.5)
    assert cfg.model.head.loss.label_smooth_val == 0.1
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert types == ['LoadImageFromFile', 'RandomInterpolationResizedCrop', 'RandomFlip',
                     'RandomInterpolationRandAugment', 'PackInputs']
    # the official loader's random erasing: on the normalised batch, after mixup/cutmix
    pre = cfg.get('data_preprocessor') or cfg.model.data_preprocessor
    assert pre.type == 'EraseAfterMixDataPreprocessor'
    assert pre.erasing == dict(probability=0.25, mode='pixel', max_count=1)
    assert 'HATPhaseHook' in [h['type'] for h in cfg.custom_hooks]

    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - params_m) <= 0.1, f'{name}: {n:.2f}M parameters, paper {params_m}M'


# -- what the official code ran ---------------------------------------------------------
def _test_pipeline_steps(cfg):
    for key in ('val_dataloader', 'test_dataloader'):
        steps = cfg[key].dataset.pipeline
        assert steps == cfg.test_dataloader.dataset.pipeline
    return cfg.test_dataloader.dataset.pipeline


@pytest.mark.parametrize('name', ALL_PAPER_CONFIGS)
def test_no_clipping_best_checkpoint_no_ema(name):
    cfg = merged(name)
    # the official HAT loop calls optimizer.step() directly: --clip-grad is never applied
    assert cfg.optim_wrapper.get('clip_grad') is None
    # timm's CheckpointSaver: the best top-1 checkpoint is kept (model_best.pth.tar)
    ckpt = cfg.default_hooks.checkpoint
    assert (ckpt.save_best, ckpt.rule, ckpt.max_keep_ckpts) == ('accuracy/top1', 'greater', 3)
    # --model-ema is off by default and no published command turns it on
    assert [h['type'] for h in cfg.custom_hooks] == ['HATPhaseHook', 'NonFiniteCheckHook',
                                                     'RNGStateHook']
    assert ckpt.type == 'SafeCheckpointHook'  # HATRunner's: atomic saves, safe rotation
    # timm's create_loader / tlt's create_token_label_loader: drop_last=is_training
    assert cfg.train_dataloader.drop_last is True
    assert not cfg.val_dataloader.get('drop_last', False)
    # the official scripts' -j default: 8 loader workers per GPU, training and evaluation
    assert [cfg[f'{split}_dataloader'].num_workers for split in ('train', 'val', 'test')] == [8] * 3
    # timm's fast_collate: a training batch is one tensor (the same batch: test_fast_paths);
    # evaluation images keep mmengine's list, as their sizes need not agree
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
    assert 'collate_fn' not in cfg.val_dataloader and 'collate_fn' not in cfg.test_dataloader
    # train.py / train_kd.py: torch.backends.cudnn.benchmark = True
    assert cfg.env_cfg.cudnn_benchmark is True
    # train.py / train_kd.py: torch.manual_seed(args.seed + args.rank), np.random.seed(same)
    assert cfg.randomness == dict(seed=42, deterministic=False, diff_rank_seed=True)
    # torch's fused AdamW: the same update (test_fast_paths), 5-6% faster per step on an H100
    assert cfg.optim_wrapper.optimizer.type == 'AdamW' and cfg.optim_wrapper.optimizer.fused


@pytest.mark.parametrize('name', ALL_PAPER_CONFIGS)
def test_training_interpolation_is_drawn_as_the_official_train_interpolation_random(name):
    """train.py / train_kd.py: --train-interpolation random (bilinear or bicubic per image in
    the crop, per application in RandAugment's geometric operations), in every paper config;
    the built transforms draw it."""
    from mmpretrain.registry import TRANSFORMS
    pipeline = merged(name).train_dataloader.dataset.pipeline
    crops = [t for t in pipeline if 'ResizedCrop' in t['type']]
    augments = [t for t in pipeline if 'RandAugment' in t['type']]
    assert len(crops) == len(augments) == 1
    assert crops[0].interpolation == 'random'
    assert augments[0].hparams.interpolation == 'random'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        crop, augment = TRANSFORMS.build(crops[0]), TRANSFORMS.build(augments[0])
    assert crop.random_interpolation and augment.random_interpolation
    geometric = [op for op in augment.transforms if hasattr(op, 'interpolation')]
    assert sorted(type(op).__name__.replace('TokenLabel', '') for op in geometric) == \
        ['Rotate', 'Shear', 'Shear', 'Translate', 'Translate']


@pytest.mark.parametrize('name', [n for n in ALL_PAPER_CONFIGS if 'volo' not in n])
def test_normalisation_and_test_resize_follow_timm_default_cfg(name):
    """timm's default cfg of the released model: mean/std, and crop_pct 0.9 at test time
    (resize the short side to floor(224 / 0.9) = 248, bicubic, centre crop 224)."""
    cfg = merged(name)
    pre = cfg.get('data_preprocessor') or cfg.model.data_preprocessor
    if name.startswith('hat_vit_'):  # vit_*_patch16_224: mean = std = 0.5
        assert pre.mean == pre.std == [127.5] * 3
    else:  # Swin, DeiT distilled: ImageNet statistics
        assert (pre.mean, pre.std) == (IMAGENET_MEAN, IMAGENET_STD)
    steps = _test_pipeline_steps(cfg)
    assert [s['type'] for s in steps] == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop',
                                          'PackInputs']
    assert (steps[1].scale, steps[1].edge, steps[1].interpolation) == (248, 'short', 'bicubic')
    assert steps[2].crop_size == 224


def _decay_by_name(cfg, model):
    from mmengine.optim import build_optim_wrapper
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group['weight_decay'] for group in wrapper.optimizer.param_groups
            for p in group['params']}


@pytest.mark.parametrize('name,no_weight_decay', [
    ('hat_swin_t', {'backbone.absolute_pos_embed'}),  # timm Swin's no_weight_decay()
    ('hat_vit_t', {'backbone.pos_embed', 'backbone.cls_token'}),  # timm ViT's
])
def test_weight_decay_follows_timm_optimizer_factory(name, no_weight_decay):
    """Read from the built optimizer: timm's factory (the official code's) exempts only 1-D
    parameters, biases and the model's no_weight_decay() names; the Swin relative position
    bias tables are decayed."""
    from mmpretrain.registry import MODELS
    cfg = merged(name)
    model = MODELS.build(cfg.model)
    decay = _decay_by_name(cfg, model)
    assert set(decay) == {n for n, _ in model.named_parameters()}
    for n, p in model.named_parameters():
        timm_exempt = p.ndim <= 1 or n.endswith('.bias') or n in no_weight_decay
        assert decay[n] == (0.0 if timm_exempt else 0.05), n
    if 'swin' in name:
        tables = [n for n in decay if n.endswith('relative_position_bias_table')]
        assert len(tables) == 12 and all(decay[n] == 0.05 for n in tables)


VOLO_CROP_PCT = {'d1': 0.96, 'd5': 1.15}  # the official models/volo.py default configs


@pytest.mark.parametrize('name', [n for n in ALL_PAPER_CONFIGS if 'volo' in n])
def test_volo_test_resize_follows_official_crop_pct(name):
    import math
    cfg = merged(name)
    size = int(name.rsplit('_', 1)[1])
    crop_pct = VOLO_CROP_PCT[name.split('_')[2]]
    steps = _test_pipeline_steps(cfg)
    assert steps[1].type == 'ResizeEdge' and steps[1].scale == math.floor(size / crop_pct)
    assert steps[2].type == 'PaddedCenterCrop' and steps[2].crop_size == size
    assert (cfg.model.data_preprocessor.mean, cfg.model.data_preprocessor.std) == \
        (IMAGENET_MEAN, IMAGENET_STD)


def test_documented_clipping_override_reaches_the_optim_wrapper():
    """The paper configs do not clip; the override the config headers and the README give
    turns clipping on (a plain `optim_wrapper.clip_grad.max_norm=1.0` cannot merge into
    `clip_grad=None`)."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'hat_swin_t.py'))
    cfg.merge_from_dict({'optim_wrapper.clip_grad._delete_': True,
                         'optim_wrapper.clip_grad.max_norm': 1.0})
    cfg = apply_hat(cfg)
    model = MODELS.build(dict(cfg.model, backbone=dict(cfg.model.backbone, arch=dict(
        embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])), head=dict(
        cfg.model.head, in_channels=256)))
    from mmengine.optim import build_optim_wrapper
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)


@pytest.fixture(scope='module')
def jpeg_kinds(tmp_path_factory):
    """ImageNet's kinds of JPEG: RGB, RGB with an EXIF orientation tag (6: rotate 90),
    grayscale, CMYK; not square, so a rotation changes the shape."""
    import numpy as np
    from PIL import Image
    root = tmp_path_factory.mktemp('jpeg_kinds')
    yy, xx = np.mgrid[0:48, 0:80]
    noise = np.random.default_rng(0).normal(0, 20, (48, 80, 3))
    rgb = np.stack([xx * 3, yy * 5, (xx + yy) % 32 * 8], -1) + noise
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    paths = {kind: str(root / f'{kind}.JPEG') for kind in ('rgb', 'exif6', 'gray', 'cmyk')}
    image.save(paths['rgb'], quality=90)
    image.save(paths['exif6'], quality=90, exif=exif)
    image.convert('L').save(paths['gray'], quality=90)
    image.convert('CMYK').save(paths['cmyk'], quality=90)
    return paths


def _official_decode(path):
    """timm's ImageDataset and tlt's token-label dataset: PIL.Image.open(path).convert('RGB'),
    here in mmpretrain's BGR order (the data preprocessor's to_rgb turns it back)."""
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(path).convert('RGB'))[..., ::-1]


def test_test_images_tell_mmcvs_default_decode_from_the_official_one(jpeg_kinds):
    """mmcv's default (OpenCV, EXIF orientation applied) differs from PIL on the tagged image
    (turned upright) and on the CMYK one (one level off), so the next test can fail."""
    import mmcv
    import numpy as np
    decode = {kind: mmcv.imread(path) for kind, path in jpeg_kinds.items()}
    assert decode['exif6'].shape[:2] == _official_decode(jpeg_kinds['exif6']).shape[1::-1]
    assert not np.array_equal(decode['cmyk'], _official_decode(jpeg_kinds['cmyk']))


@pytest.mark.parametrize('name', ALL_PAPER_CONFIGS + ROBUSTNESS_CONFIGS)
def test_images_decode_as_the_official_pil_loader(name, jpeg_kinds):
    """Every image-loading step of a paper config (training, validation, test) gives the
    official loader's pixels: no EXIF rotation, PIL's grayscale and CMYK conversion."""
    import numpy as np
    from mmpretrain.registry import TRANSFORMS
    cfg = merged(name) if name in ALL_PAPER_CONFIGS else \
        Config.fromfile(osp.join(ROOT, 'configs', 'robustness', f'{name}.py'))
    steps = [step for split in ('train', 'val', 'test')
             for step in cfg[f'{split}_dataloader'].dataset.pipeline
             if step['type'] == 'LoadImageFromFile']
    assert len(steps) == 3
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loaders = [TRANSFORMS.build(step) for step in steps]
    for kind, path in jpeg_kinds.items():
        official = _official_decode(path)
        for load in loaders:
            img = load(dict(img_path=path))['img']
            assert img.dtype == np.uint8 and np.array_equal(img, official), (kind, steps)

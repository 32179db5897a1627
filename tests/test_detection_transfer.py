"""COCO transfer configs (the paper's COCO rows): Cascade Mask R-CNN with a HAT-pretrained Swin.

- every config loads, builds with mmdet's registries, has the paper's parameter count and the
  official recipe (GIoU 4conv1fc heads, AdamW, 3x schedule, the two augmentation policies);
- a checkpoint written by HAT pretraining (``configs/hat_swin_{t,s,b}.py``) initialises the
  detection backbone key for key (only the output norms of stages 0-2 are new);
- for each config, ``tools/train.py`` trains two iterations (2 x 2 images, both augmentation
  policies at small scales) on a tiny synthetic COCO set through the real runner, starting
  from such a checkpoint (CheckPretrainedKeysHook checks it), evaluates COCO bbox/segm mAP,
  and ``tools/test.py`` evaluates the written checkpoint;
- a pretrained checkpoint that does not fit stops training with the offending keys named.
"""
import json
import math
import os
import os.path as osp
import sys
from contextlib import contextmanager

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from tools.tiny_run_options import coco_options

from .runner_utils import ROOT, run_tool

ARCHS = ('t', 's', 'b')
# the paper's COCO table: parameters of the whole detector (millions).
PAPER_PARAMS_M = dict(t=86, s=107, b=145)
EMBED_DIMS = dict(t=96, s=96, b=128)
DROP_PATH = dict(t=0.2, s=0.2, b=0.3)
SWIN_ARCH = dict(t='tiny', s='small', b='base')


def det_config(arch):
    return osp.join(ROOT, 'configs', 'downstream',
                    f'cascade-mask-rcnn_hat-swin-{arch}-p4-w7_fpn_giou-4conv1f_ms-crop-3x_coco.py')


@contextmanager
def scope(name):
    """Build with the registries of ``name``; the previous default scope is restored."""
    with DefaultScope.overwrite_default_scope(name):
        yield


def build_detector(cfg):
    import hat_mm  # noqa: F401
    import mmpretrain.models  # noqa: F401  registers mmpretrain.SwinTransformer
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with scope('mmdet'):
        return MODELS.build(cfg.model)


# --------------------------------------------------------------------------------------
# fixtures: the tiny COCO data and HAT pretraining checkpoints, written once per session
# --------------------------------------------------------------------------------------
@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    from tools.dataset_converters.make_tiny_coco import make_tiny_coco
    root = str(tmp_path_factory.mktemp('tiny_coco'))
    make_tiny_coco(root, num_train=4, num_val=2, size=(192, 144), seed=0)
    return root


@pytest.fixture(scope='session')
def hat_ckpt(tmp_path_factory):
    """``hat_ckpt(arch)``: path of a checkpoint as HAT pretraining writes it (the HAT classifier
    of configs/hat_swin_{arch}.py: keys backbone.* and head.*), made once per session."""
    directory = tmp_path_factory.mktemp('hat_ckpts')
    paths = {}

    def get(arch):
        if arch not in paths:
            from mmpretrain.registry import MODELS
            import hat_mm  # noqa: F401
            from hat_mm.engine import apply_hat
            cfg = apply_hat(Config.fromfile(osp.join(ROOT, 'configs', f'hat_swin_{arch}.py')))
            with scope('mmpretrain'):
                torch.manual_seed(0)
                model = MODELS.build(cfg.model)
            state = model.state_dict()
            for v in state.values():  # distinct from any default initialisation (norms)
                if v.is_floating_point():
                    v.add_(0.02 * torch.randn(v.shape))
            path = str(directory / f'hat_swin_{arch}_epoch_310.pth')
            torch.save({'state_dict': state, 'meta': {}}, path)
            paths[arch] = path
        return paths[arch]

    yield get
    for path in paths.values():  # 110-350 MB each; pytest keeps its last temp dirs
        os.remove(path)


def run(args):
    # one OpenMP thread (run_tool's default): two oversubscribe a busy 2-core machine badly
    return run_tool([sys.executable, *args])


# --------------------------------------------------------------------------------------
# the tiny COCO data
# --------------------------------------------------------------------------------------
def test_make_tiny_coco_is_valid_coco_and_deterministic(tmp_path):
    from pycocotools.coco import COCO
    from tools.dataset_converters.make_tiny_coco import make_tiny_coco
    paths = make_tiny_coco(str(tmp_path / 'a'), num_train=3, num_val=2, size=(160, 120), seed=3)
    res = run(['tools/dataset_converters/make_tiny_coco.py', str(tmp_path / 'b'),
               '--num-train', '3', '--num-val', '2', '--size', '160', '120', '--seed', '3'])
    assert res.returncode == 0, res.stdout
    for split, n in (('train2017', 3), ('val2017', 2)):
        ann = f'annotations/instances_{split}.json'
        a, b = ((tmp_path / d / ann).read_bytes() for d in 'ab')
        assert a == b  # same seed, same data (through the function and the CLI)
        for img in sorted((tmp_path / 'a' / split).iterdir()):
            assert img.read_bytes() == (tmp_path / 'b' / split / img.name).read_bytes()
        coco = COCO(str(tmp_path / 'a' / ann))
        assert len(coco.getImgIds()) == n and len(coco.getCatIds()) == 80
        assert coco.loadCats(72)[0]['name'] == 'tv'
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            assert (info['width'], info['height']) == (160, 120)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 4
            for obj in anns:
                x, y, w, h = obj['bbox']
                xs, ys = obj['segmentation'][0][0::2], obj['segmentation'][0][1::2]
                assert obj['iscrowd'] == 0 and 0 < obj['area'] <= w * h + 1
                assert (min(xs), min(ys)) == pytest.approx((x, y), abs=0.02)
                assert (max(xs), max(ys)) == pytest.approx((x + w, y + h), abs=0.02)
                assert coco.annToMask(obj).sum() == pytest.approx(obj['area'])
    assert paths['train_ann'] == 'annotations/instances_train2017.json'
    assert make_tiny_coco(str(tmp_path / 'c'), 3, 2, (160, 120), seed=4) and \
        (tmp_path / 'c' / 'annotations/instances_train2017.json').read_bytes() != \
        (tmp_path / 'a' / 'annotations/instances_train2017.json').read_bytes()


# --------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
def test_config_builds_with_spec_params_and_recipe(arch):
    cfg = Config.fromfile(det_config(arch))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports.imports == ['hat_mm']
    # the official dense Swin builds every output norm fresh: norm3 is not loaded
    assert cfg.custom_hooks == [dict(type='CheckPretrainedKeysHook',
                                     allow_missing=['norm0.', 'norm1.', 'norm2.'],
                                     reinit=['norm3']),
                                dict(type='NonFiniteCheckHook'), dict(type='RNGStateHook')]
    ckpt = cfg.default_hooks.checkpoint
    assert (ckpt.type, ckpt.interval) == ('SafeCheckpointHook', 1)  # mmdet's interval kept

    bb = cfg.model.backbone
    assert bb.type == 'mmpretrain.SwinTransformer' and bb.arch == SWIN_ARCH[arch]
    assert 'depth' not in bb and 'style' not in bb  # ResNet settings are gone
    assert bb.drop_path_rate == DROP_PATH[arch] and not bb.with_cp
    assert tuple(bb.out_indices) == (0, 1, 2, 3)
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=cfg.pretrained,
                               prefix='backbone.')
    assert cfg.pretrained == f'work_dirs/hat_swin_{arch}/epoch_310.pth'
    c = EMBED_DIMS[arch]
    assert cfg.model.neck.in_channels == [c, 2 * c, 4 * c, 8 * c]
    assert cfg.model.neck.out_channels == 256 and cfg.model.neck.num_outs == 5

    assert cfg.model.type == 'CascadeRCNN'
    heads = cfg.model.roi_head.bbox_head
    assert len(heads) == cfg.model.roi_head.num_stages == 3
    stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    for head, std in zip(heads, stds):
        assert head.type == 'Shared4Conv1FCBBoxHead'
        assert head.conv_out_channels == 256 and head.fc_out_channels == 1024
        assert head.norm_cfg.type == 'SyncBN'
        assert head.reg_decoded_bbox is True
        assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
        assert list(head.bbox_coder.target_stds) == std
    assert cfg.model.roi_head.mask_head.type == 'FCNMaskHead'

    optim = cfg.optim_wrapper.optimizer
    assert optim == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
    pw = cfg.optim_wrapper.paramwise_cfg
    # the official config's paramwise_cfg: these three name keys, nothing by layer type
    assert 'norm_decay_mult' not in pw and 'bias_decay_mult' not in pw
    assert {k: v.decay_mult for k, v in pw.custom_keys.items()} == {
        'absolute_pos_embed': 0., 'relative_position_bias_table': 0., 'norm': 0.}
    assert cfg.train_cfg.max_epochs == 36
    warmup, steps = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and not warmup.by_epoch
    assert steps.type == 'MultiStepLR' and steps.milestones == [27, 33] and steps.end == 36
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16 images per iteration
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)

    model = build_detector(cfg)
    assert type(model.backbone).__module__.startswith('mmpretrain.')
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - PAPER_PARAMS_M[arch] * 1e6) < 1e6, f'{n / 1e6:.2f}M parameters'
    convs = model.roi_head.bbox_head[0]
    assert len(convs.shared_convs) == 4 and len(convs.shared_fcs) == 1

    if arch == 't':  # the paramwise rules on the built model (the same code for S/B)
        from mmengine.optim import build_optim_wrapper
        with scope('mmdet'):
            wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        decay = {}
        names = {id(p): n for n, p in model.named_parameters()}
        for group in wrapper.optimizer.param_groups:
            for p in group['params']:
                decay[names[id(p)]] = group['weight_decay']
        # The official rule (mmcv 1.x custom_keys: a key contained in the parameter's name),
        # applied to every parameter: the backbone's LayerNorms and position tables are
        # exempt; biases and the box heads' SyncBN layers (`bn`) are decayed.
        official_exempt = ('absolute_pos_embed', 'relative_position_bias_table', 'norm')
        assert set(decay) == set(names.values())
        for name, wd in decay.items():
            assert wd == (0 if any(k in name for k in official_exempt) else 0.05), name
        assert decay['backbone.stages.2.blocks.5.norm1.weight'] == 0
        assert decay['backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table'] == 0
        assert decay['roi_head.bbox_head.1.shared_convs.0.bn.weight'] == 0.05
        assert decay['roi_head.bbox_head.1.shared_convs.0.bn.bias'] == 0.05


def test_training_pipeline_has_both_policies(tiny_coco):
    cfg = Config.fromfile(det_config('t'))
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t.type for t in pipeline] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip',
                                          'RandomChoice', 'PackDetInputs']
    assert pipeline[1].with_mask and pipeline[2].prob == 0.5
    ms = [(1333, s) for s in range(480, 801, 32)]
    resize, = pipeline[3].transforms[0]
    assert resize.type == 'RandomChoiceResize' and resize.keep_ratio
    assert sorted(map(sorted, resize.scales)) == sorted(map(sorted, ms))
    first, crop, second = pipeline[3].transforms[1]
    assert sorted(map(sorted, first.scales)) == [[400, 1333], [500, 1333], [600, 1333]]
    assert (crop.type, crop.crop_type, tuple(crop.crop_size), crop.allow_negative_crop) == \
        ('RandomCrop', 'absolute_range', (384, 600), True)
    assert second.scales == resize.scales

    # The real transforms on real 4:3 samples: every output has a short side in 480..800;
    # policy (a) keeps the aspect ratio, the crop of policy (b) changes it.
    import numpy as np
    from mmdet.datasets import CocoDataset
    from mmengine.dataset import Compose
    np.random.seed(0)  # the transforms draw from numpy's global generator
    with scope('mmdet'):
        transforms = Compose(pipeline[:-1])
        ds = CocoDataset(data_root=tiny_coco, ann_file='annotations/instances_train2017.json',
                         data_prefix=dict(img='train2017/'), pipeline=[])
        short_sides, ratios = set(), set()
        for i in range(16):
            out = transforms(ds[i % len(ds)])
            h, w = out['img'].shape[:2]
            assert out['gt_masks'].height == h and out['gt_masks'].width == w
            assert len(out['gt_bboxes']) == len(out['gt_masks'])
            short_sides.add(min(h, w))
            ratios.add(round(w / h, 2))
    assert short_sides <= set(range(480, 801, 32)) and len(short_sides) > 1
    assert 1.33 in ratios and len(ratios) > 1, ratios


# --------------------------------------------------------------------------------------
# HAT pretraining checkpoints initialise the detection backbone
# --------------------------------------------------------------------------------------
def _init_from(arch, ckpt):
    cfg = Config.fromfile(det_config(arch))
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    model = build_detector(cfg)
    model.init_weights()
    return model


@pytest.mark.parametrize('arch', ARCHS)
def test_hat_checkpoint_initialises_backbone(arch, hat_ckpt):
    ckpt = hat_ckpt(arch)
    state = torch.load(ckpt, map_location='cpu')['state_dict']
    assert {k.split('.')[0] for k in state} == {'backbone', 'head'}
    model = _init_from(arch, ckpt)
    backbone = model.backbone.state_dict()
    pretrained = {k[len('backbone.'):]: v for k, v in state.items()
                  if k.startswith('backbone.')}
    not_loaded = sorted(k for k in backbone if k not in pretrained)
    assert not_loaded == [f'norm{i}.{p}' for i in range(3) for p in ('bias', 'weight')]
    assert not [k for k in pretrained if k not in backbone]
    for k, v in pretrained.items():
        assert torch.equal(backbone[k], v), k

    from hat_mm.engine import compare_with_checkpoint  # what the hook checks
    result = compare_with_checkpoint(model.backbone, ckpt, 'backbone.',
                                     ['norm0.', 'norm1.', 'norm2.'])
    assert result == dict(missing=[], unexpected=[], shape=[])


# --------------------------------------------------------------------------------------
# the tools, end to end
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
def test_train_then_test_from_hat_checkpoint(arch, tiny_coco, hat_ckpt, tmp_path):
    config = det_config(arch)
    ckpt = hat_ckpt(arch)
    work = tmp_path / 'work'
    res = run(['tools/train.py', config, '--work-dir', str(work), '--cfg-options',
               *coco_options(tiny_coco, pretrained=ckpt)])
    out = res.stdout
    assert res.returncode == 0, out[-6000:]
    assert (f'model.backbone: every weight matches the pretrained checkpoint {ckpt} '
            "(prefix='backbone.'); the 6 weights of the layers it does not have (norm0, "
            'norm1, norm2) keep their initialisation, as expected') in out  # the hook's
    assert 'Epoch(train) [1][2/2]' in out and 's2.loss_mask' in out
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out  # validation after the epoch
    trained = work / 'epoch_1.pth'
    assert trained.is_file()
    # training started from the pretrained backbone (2 iterations at a warm-up LR of ~1e-7)
    import hat_mm  # noqa: F401  allow-lists mmengine's checkpoint classes for torch.load
    weights = torch.load(trained, map_location='cpu')['state_dict']
    pretrained = torch.load(ckpt, map_location='cpu')['state_dict']
    for key in ('backbone.patch_embed.projection.weight',
                'backbone.stages.3.blocks.1.ffn.layers.1.weight'):
        assert torch.allclose(weights[key], pretrained[key], atol=1e-4), key
    # ... except norm3, built fresh as the official detection backbone builds it
    assert 'model.backbone.norm3: built fresh, not loaded from the checkpoint' in out
    assert torch.allclose(weights['backbone.norm3.weight'], torch.ones(8 * EMBED_DIMS[arch]),
                          atol=1e-4)
    assert not torch.allclose(pretrained['backbone.norm3.weight'],
                              weights['backbone.norm3.weight'], atol=1e-3)
    del weights, pretrained

    # tools/test.py loads every weight strictly; the pretraining checkpoint is not needed.
    metrics_file = tmp_path / 'metrics.json'
    try:
        res = run(['tools/test.py', config, str(trained), '--work-dir', str(tmp_path / 'test'),
                   '--out', str(metrics_file), '--cfg-options', *coco_options(tiny_coco)])
        assert res.returncode == 0, res.stdout[-6000:]
    finally:
        trained.unlink()  # 340-580 MB
    metrics = json.loads(metrics_file.read_text())
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert math.isfinite(metrics[key]) and -1.0 <= metrics[key] <= 1.0, (key, metrics)
    assert f'Test results of {trained}' in res.stdout


def test_mismatched_pretrained_checkpoint_stops_training(tiny_coco, hat_ckpt, tmp_path):
    state = torch.load(hat_ckpt('t'), map_location='cpu')
    state = state['state_dict']
    del state['backbone.stages.1.blocks.0.attn.w_msa.qkv.weight']
    state['backbone.stages.2.blocks.3.ffn.layers.0.0.weight'] = torch.zeros(1536, 96)
    bad = tmp_path / 'other_arch.pth'
    torch.save({'state_dict': state, 'meta': {}}, bad)
    work = tmp_path / 'work'
    res = run(['tools/train.py', det_config('t'), '--work-dir', str(work), '--cfg-options',
               *coco_options(tiny_coco, pretrained=str(bad))])
    bad.unlink()
    out = res.stdout
    assert res.returncode != 0
    assert 'CheckpointError' in out and str(bad) in out
    assert 'missing in checkpoint: stages.1.blocks.0.attn.w_msa.qkv.weight' in out
    assert ('stages.2.blocks.3.ffn.layers.0.0.weight: checkpoint (1536, 96) vs model '
            '(1536, 384)') in out
    assert 'norm0.' not in out.split('does not fit')[-1]  # the allowed new norms
    assert 'Epoch(train)' not in out and not (work / 'epoch_1.pth').exists()

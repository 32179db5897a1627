"""ADE20K / UperNet transfer of HAT-pretrained Swin backbones (the paper's ADE20K rows).

The three configs inherit mmseg's port of the official Swin segmentation configs and swap in
mmpretrain's SwinTransformer (the implementation pretraining trains). Checked here: the
settings and parameter counts, that a HAT pretraining checkpoint fills every backbone weight
but the new output norms, and a real CPU run of tools/train.py + tools/test.py (single scale
and the multi-scale + flip TTA) on a tiny synthetic ADE20K for Swin-T. Swin-S/B are built and
run through one forward/backward on a small batch instead of a full run (CPU time).
"""
import copy
import json
import math
import os.path as osp
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

import hat_mm  # noqa: F401  (registers CheckPretrainedKeysHook and the HAT classifier)
from hat_mm.engine import apply_hat, compare_with_checkpoint
from tools.dataset_converters.make_tiny_ade20k import class_color, make_tiny_ade20k
from tools.tiny_run_options import ADE20K_TTA_RATIOS, ade20k_options, ade20k_tta_options

from .runner_utils import ROOT, run_tool

# the paper's ADE20K table: params (M); embed dims C; mmpretrain arch
PAPER = {'t': (60, 96, 'tiny'), 's': (81, 96, 'small'), 'b': (121, 128, 'base')}
OUTPUT_NORMS = ['norm0.', 'norm1.', 'norm2.']  # stage 0-2 output norms, new in dense tasks
TINY_SIZE = (96, 128)  # (h, w) of the synthetic images


def config_path(size):
    return osp.join(ROOT, 'configs', 'downstream',
                    f'upernet_hat-swin-{size}-p4-w7_8xb2-160k_ade20k-512x512.py')


def seg_models():
    """mmseg's MODELS registry (mmseg 1.2.2 imports ftfy and regex with its models)."""
    try:
        import mmseg.models  # noqa: F401
    except ModuleNotFoundError as e:
        pytest.fail(f'mmseg.models cannot be imported: {e}. mmseg 1.2.2 needs ftfy and regex '
                    '(its "multimodal" extra) at import: pip install ftfy regex')
    from mmseg.registry import MODELS
    return MODELS


def build_segmentor(cfg):
    import mmpretrain.models  # noqa: F401  (custom_imports of the config)
    registry = seg_models()
    with DefaultScope.overwrite_default_scope('mmseg'):
        return registry.build(copy.deepcopy(cfg.model))


@pytest.fixture(scope='session')
def tiny_ade(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiny_ade20k'))
    make_tiny_ade20k(root, num_train=6, num_val=2, size=TINY_SIZE)
    return root


@pytest.fixture(scope='session')
def hat_checkpoint(tmp_path_factory):
    """``size -> path`` of a checkpoint laid out as HAT pretraining writes it (backbone.*,
    head.*), from the classifier of configs/hat_swin_<size>.py, weights made distinct from
    any default initialisation."""
    cache = {}
    folder = tmp_path_factory.mktemp('hat_ckpt')

    def get(size):
        if size not in cache:
            from mmpretrain.registry import MODELS
            cfg = apply_hat(Config.fromfile(osp.join(ROOT, 'configs', f'hat_swin_{size}.py')))
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                model = MODELS.build(cfg.model)
            state = model.state_dict()
            gen = torch.Generator().manual_seed(0)
            for v in state.values():
                if v.is_floating_point():
                    v.add_(0.02 * torch.randn(v.shape, generator=gen))
            path = str(folder / f'hat_swin_{size}_epoch_310.pth')
            torch.save({'state_dict': state, 'meta': {}}, path)
            cache[size] = path
        return cache[size]

    return get


def test_tiny_ade20k_layout_labels_and_determinism(tiny_ade, tmp_path):
    for split, stem, n in (('training', 'ADE_train', 6), ('validation', 'ADE_val', 2)):
        for i in range(1, n + 1):
            img = Image.open(osp.join(tiny_ade, 'images', split, f'{stem}_{i:08d}.jpg'))
            ann = Image.open(osp.join(tiny_ade, 'annotations', split, f'{stem}_{i:08d}.png'))
            assert img.mode == 'RGB' and ann.mode == 'L'
            assert img.size == ann.size == (TINY_SIZE[1], TINY_SIZE[0])
    labels, colours_ok = set(), []
    for i in range(1, 7):
        image = np.asarray(Image.open(
            osp.join(tiny_ade, 'images', 'training', f'ADE_train_{i:08d}.jpg')), np.float32)
        label = np.asarray(Image.open(
            osp.join(tiny_ade, 'annotations', 'training', f'ADE_train_{i:08d}.png')))
        values = set(np.unique(label).tolist())
        assert len(values - {0}) >= 2 and values <= set(range(151))
        labels |= values
        for v in values:  # each region has its class colour (JPEG and noise aside)
            mask = label == v
            if mask.sum() >= 50:
                colours_ok.append(
                    np.abs(image[mask].mean(0) - np.array(class_color(v))).max() < 12)
    assert 0 in labels and len(labels) >= 5  # "other" regions and several classes
    assert colours_ok and all(colours_ok)

    again = tmp_path / 'again'
    make_tiny_ade20k(str(again), num_train=2, num_val=1, size=TINY_SIZE)
    for rel in ('images/training/ADE_train_00000002.jpg',
                'annotations/training/ADE_train_00000002.png',
                'annotations/validation/ADE_val_00000001.png'):
        assert (again / rel).read_bytes() == open(osp.join(tiny_ade, rel), 'rb').read()

    # mmseg's real ADE20KDataset reads it; reduce_zero_label maps 0 -> 255, k -> k - 1
    from mmseg.registry import DATASETS
    seg_models()
    cfg = Config.fromfile(config_path('t'))
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    ds_cfg.data_root = tiny_ade
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(ds_cfg)
    assert len(dataset) == 2 and len(dataset.metainfo['classes']) == 150
    gt = dataset[0]['data_samples'].gt_sem_seg.data.numpy()
    raw = np.asarray(Image.open(osp.join(tiny_ade, 'annotations', 'validation',
                                         'ADE_val_00000001.png'))).astype(np.int64)
    expected = np.where(raw == 0, 255, raw - 1)
    assert gt.shape[-2:] == raw.shape and (gt[0] == expected).all()


@pytest.mark.parametrize('size', ['t', 's', 'b'])
def test_config_settings_and_params(size):
    params_m, c, arch = PAPER[size]
    cfg = Config.fromfile(config_path(size))
    assert cfg.custom_imports.imports == ['hat_mm']
    assert cfg.default_scope == 'mmseg'
    # backbone: mmpretrain's SwinTransformer, pretrained from the HAT run
    bb = cfg.model.backbone
    assert bb.type == 'mmpretrain.SwinTransformer' and bb.arch == arch
    assert bb.out_indices == (0, 1, 2, 3) and bb.drop_path_rate == 0.3
    assert bb.window_size == 7 and 'depths' not in bb  # mmseg's own keys are gone
    assert cfg.pretrained == f'work_dirs/hat_swin_{size}/epoch_310.pth'
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=cfg.pretrained, prefix='backbone.')
    assert [h.type for h in cfg.custom_hooks] == ['CheckPretrainedKeysHook',
                                                  'NonFiniteCheckHook']
    assert cfg.default_hooks.checkpoint.type == 'SafeCheckpointHook'
    assert cfg.default_hooks.checkpoint.interval == 16000  # mmseg's schedule is kept
    assert cfg.custom_hooks[0].allow_missing == OUTPUT_NORMS
    assert cfg.custom_hooks[0].reinit == ['norm3']  # official: every output norm is new
    # heads
    assert cfg.model.decode_head.type == 'UPerHead'
    assert cfg.model.decode_head.in_channels == [c, 2 * c, 4 * c, 8 * c]
    assert cfg.model.decode_head.num_classes == 150
    aux = cfg.model.auxiliary_head
    assert aux.type == 'FCNHead' and aux.in_channels == 4 * c and aux.in_index == 2
    assert aux.num_classes == 150 and aux.loss_decode.loss_weight == 0.4
    # data: 512x512 crops, 2 images per GPU (x 8 GPUs = 16), whole-image test at 2048x512
    assert cfg.crop_size == (512, 512) and cfg.model.data_preprocessor.size == (512, 512)
    train_types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert train_types[2:4] == ['RandomResize', 'RandomCrop']  # indices used by ade20k_options
    assert cfg.train_dataloader.dataset.pipeline[3].crop_size == (512, 512)
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (2048, 512)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'Resize'
    assert cfg.test_dataloader.dataset.pipeline[1].scale == (2048, 512)
    assert cfg.model.test_cfg.mode == 'whole'
    # schedule: 160k iterations, AdamW 6e-5, wd 0.01, 1500 linear warm-up then poly (1.0, 0)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 160000
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.betas, opt.weight_decay) == ('AdamW', 6e-5, (0.9, 0.999),
                                                               0.01)
    assert {k: v.decay_mult for k, v in cfg.optim_wrapper.paramwise_cfg.custom_keys.items()} \
        == {'absolute_pos_embed': 0.0, 'relative_position_bias_table': 0.0, 'norm': 0.0}
    warm, poly = cfg.param_scheduler
    assert (warm.type, warm.begin, warm.end, warm.by_epoch) == ('LinearLR', 0, 1500, False)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end, poly.by_epoch) == \
        ('PolyLR', 1.0, 0.0, 1500, 160000, False)
    # mIoU(MS): the 2048x512 scale times each ratio, with and without flip
    assert cfg.tta_model.type == 'SegTTAModel'
    tta = cfg.tta_pipeline[1]
    assert tta.type == 'TestTimeAug'
    assert [t.scale for t in tta.transforms[0]] == [(int(2048 * r), int(512 * r))
                                                    for r in ADE20K_TTA_RATIOS]
    assert all(t.keep_ratio for t in tta.transforms[0])
    assert [(t.type, t.prob) for t in tta.transforms[1]] == [('RandomFlip', 0.0),
                                                             ('RandomFlip', 1.0)]

    model = build_segmentor(cfg)
    from mmpretrain.models import SwinTransformer
    assert type(model.backbone) is SwinTransformer
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - params_m) <= 1.0, f'Swin-{size.upper()}: {n:.2f}M params, paper {params_m}M'

    # the no-decay keys hit mmpretrain's parameter names
    from mmengine.optim import build_optim_wrapper
    with DefaultScope.overwrite_default_scope('mmseg'):
        wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    names = {id(p): name for name, p in model.named_parameters()}
    decay = {names[id(p)]: g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    assert decay['backbone.stages.0.blocks.0.attn.w_msa.relative_position_bias_table'] == 0
    assert decay['backbone.norm0.weight'] == decay['backbone.stages.1.blocks.1.norm2.bias'] == 0
    assert decay['backbone.stages.2.downsample.norm.weight'] == 0
    assert decay['backbone.stages.0.blocks.0.attn.w_msa.qkv.weight'] == 0.01
    assert decay['decode_head.conv_seg.weight'] == 0.01

    # one training forward/backward on a small batch (64x64, small maps padded to windows)
    from mmengine.model import revert_sync_batchnorm
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    model = revert_sync_batchnorm(model).train()
    model.data_preprocessor.size = (64, 64)
    torch.manual_seed(0)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, 64, 64)))
        samples.append(s)
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)] * 2,
             data_samples=samples), True)
    losses = model.loss(**data)
    assert set(losses) >= {'decode.loss_ce', 'aux.loss_ce'}
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grad = model.backbone.stages[0].blocks[0].attn.w_msa.qkv.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize('size', ['t', 's', 'b'])
def test_hat_pretraining_checkpoint_fills_backbone(size, hat_checkpoint):
    ckpt_path = hat_checkpoint(size)
    ckpt = torch.load(ckpt_path, map_location='cpu')['state_dict']
    assert any(k.startswith('head.') for k in ckpt)  # the classification head is left out
    pretrained = {k[len('backbone.'):]: v for k, v in ckpt.items() if k.startswith('backbone.')}

    cfg = Config.fromfile(config_path(size))
    cfg.model.backbone.init_cfg.checkpoint = ckpt_path
    model = build_segmentor(cfg)
    model.init_weights()
    own = model.backbone.state_dict()
    missing = sorted(k for k in own if k not in pretrained)
    assert missing == [f'norm{i}.{p}' for i in range(3) for p in ('bias', 'weight')]
    assert not [k for k in pretrained if k not in own]
    for k, v in pretrained.items():
        assert torch.equal(own[k], v), f'backbone.{k} was not loaded from the checkpoint'

    # what CheckPretrainedKeysHook checks before training: nothing to report ...
    result = compare_with_checkpoint(model.backbone, ckpt_path, 'backbone.', OUTPUT_NORMS)
    assert result == dict(missing=[], unexpected=[], shape=[])
    # ... while a checkpoint of another Swin is reported
    if size != 't':
        other = compare_with_checkpoint(model.backbone, hat_checkpoint('t'), 'backbone.',
                                        OUTPUT_NORMS)
        assert other['missing'] if size == 's' else other['shape']


def test_output_norm3_is_built_fresh_not_loaded(hat_checkpoint):
    """The official Swin segmentation/detection backbone adds a new norm per output stage and
    never loads the classifier's final norm: the config's hook resets norm3 after loading."""
    from mmengine.logging import MMLogger
    from mmengine.registry import HOOKS
    ckpt_path = hat_checkpoint('t')
    pretrained = torch.load(ckpt_path, map_location='cpu')['state_dict']
    cfg = Config.fromfile(config_path('t'))
    cfg.model.backbone.init_cfg.checkpoint = ckpt_path
    model = build_segmentor(cfg)
    model.init_weights()  # mmengine's Pretrained init loads norm3 from the checkpoint ...
    assert torch.equal(model.backbone.norm3.weight, pretrained['backbone.norm3.weight'])
    hook = HOOKS.build(copy.deepcopy(cfg.custom_hooks[0]))

    class Runner:  # what the hook reads of mmengine's runner
        _resume, _load_from = False, None
        logger = MMLogger.get_current_instance()

    Runner.model = model
    hook.before_train(Runner())  # ... and the hook builds it fresh before training
    fresh = torch.nn.LayerNorm(768)
    assert torch.equal(model.backbone.norm3.weight, fresh.weight)
    assert torch.equal(model.backbone.norm3.bias, fresh.bias)
    assert not torch.equal(pretrained['backbone.norm3.weight'], fresh.weight)
    for k, v in model.backbone.state_dict().items():  # everything else stays loaded
        if not k.startswith(('norm0.', 'norm1.', 'norm2.', 'norm3.')):
            assert torch.equal(v, pretrained['backbone.' + k]), k


def test_swin_t_train_and_test_on_tiny_ade20k(tiny_ade, hat_checkpoint, tmp_path,
                                              monkeypatch):
    config = config_path('t')
    ckpt_path = hat_checkpoint('t')
    work = tmp_path / 'work'
    res = run_tool([sys.executable, 'tools/train.py', config, '--work-dir', str(work),
                    '--cfg-options', *ade20k_options(tiny_ade, ckpt_path)], timeout=900)
    out = res.stdout
    assert res.returncode == 0, out[-4000:]
    assert 'model.backbone: every weight matches the pretrained checkpoint' in out
    assert 'Iter(train) [2/2]' in out and 'decode.loss_ce' in out and 'aux.loss_ce' in out
    assert 'Iter(val) [2/2]' in out and 'mIoU:' in out
    trained = work / 'iter_2.pth'
    assert trained.is_file()
    # fine-tuning started from the HAT weights (2 warm-up steps barely move them)
    start = torch.load(ckpt_path, map_location='cpu')['state_dict']
    end = torch.load(trained, map_location='cpu')['state_dict']
    key = 'backbone.stages.2.blocks.3.ffn.layers.0.0.weight'
    assert torch.allclose(start[key], end[key], atol=1e-4)
    assert {k for k in end if k.startswith('backbone.')} == \
        {k for k in start if k.startswith('backbone.')} | \
        {f'backbone.norm{i}.{p}' for i in range(3) for p in ('weight', 'bias')}

    # single-scale test through tools/test.py
    metrics_file = tmp_path / 'ss.json'
    res = run_tool([sys.executable, 'tools/test.py', config, str(trained), '--work-dir',
                    str(tmp_path / 'test_ss'), '--out', str(metrics_file), '--cfg-options',
                    *ade20k_options(tiny_ade)], timeout=600)
    assert res.returncode == 0, res.stdout[-4000:]
    metrics = json.loads(metrics_file.read_text())
    assert math.isfinite(metrics['mIoU']) and 0.0 <= metrics['mIoU'] <= 100.0
    assert 'Test results of' in res.stdout and 'mIoU:' in res.stdout

    # multi-scale + flip: tools/test.py --tta (tta_model + tta_pipeline of the config), the
    # six scales shrunk as ade20k_options shrinks the single one (2048x512 -> 256x64)
    from mmseg.models import SegTTAModel
    from tools.test import main as test_main
    views, shapes = [], set()
    merge_preds = SegTTAModel.merge_preds

    def spy(self, data_samples_list):
        views.extend(len(samples) for samples in data_samples_list)
        shapes.update((s.img_shape, s.flip) for samples in data_samples_list for s in samples)
        return merge_preds(self, data_samples_list)

    monkeypatch.setattr(SegTTAModel, 'merge_preds', spy)
    # the runner built in this process makes 'mmseg' the current default scope: keep that
    # to this test (later tests build mmpretrain models without a scope)
    monkeypatch.setattr(DefaultScope, '_instance_dict',
                        OrderedDict(DefaultScope._instance_dict))
    metrics_file = tmp_path / 'ms.json'
    metrics = test_main([config, str(trained), '--tta', '--work-dir', str(tmp_path / 'test_ms'),
                         '--out', str(metrics_file), '--cfg-options', *ade20k_options(tiny_ade),
                         *ade20k_tta_options()])
    assert views == [12, 12]  # 2 images x 6 scales x 2 flips
    # short side 64 * ratio (the 96x128 images fit 256x64 * ratio), with and without flip
    assert sorted({shape[0] for shape, _ in shapes}) == [32, 48, 64, 80, 96, 112]
    assert {flip for _, flip in shapes} == {False, True}
    assert math.isfinite(metrics['mIoU']) and 0.0 <= metrics['mIoU'] <= 100.0
    assert json.loads(metrics_file.read_text())['mIoU'] == pytest.approx(metrics['mIoU'])


def test_test_tool_writes_numpy_metrics_as_numbers():
    """mmseg's mIoU is a numpy float32 under numpy 2; --out must still hold a number."""
    import numpy as np

    from tools.test import metrics_for_json
    out = json.loads(json.dumps(metrics_for_json(
        {'mIoU': np.float32(41.5), 'aAcc': np.float64(3.25), 'n': 2, 'kind': 'ss'})))
    assert out == {'mIoU': 41.5, 'aAcc': 3.25, 'n': 2.0, 'kind': 'ss'}

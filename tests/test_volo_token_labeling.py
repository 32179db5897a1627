"""VOLO + token labeling + HAT: the five configs, the release checkpoints, the token-label
targets, the score-map tool, and the HAT update against a plain-PyTorch reference."""
import argparse
import copy
import math
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper

import hat_mm  # noqa: F401
import hat_mm.datasets  # noqa: F401
import hat_mm.models.volo  # noqa: F401  (registers VOLOClassifier, HATVOLOClassifier)
from hat_mm import hat_backward
from hat_mm.engine import apply_hat

from .helpers import EPS, paper_config, reference_hat_loop
from .runner_utils import ROOT

DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'hat_vit_digits.py')

# paper params (M), img size, label size, timm model, crop_pct (the official models/volo.py
# default configs: 0.96 for volo_d1, 1.15 for volo_d5), lr, drop-path, epochs, GT
VOLO_ROWS = {
    'hat_volo_d1_224': (26.6, 224, 14, 'volo_d1_224', 0.96, 1.6e-3, 0.1, 310, False),
    'hat_volo_d1_384': (26.6, 384, 24, 'volo_d1_384', 0.96, 8e-6, 0.1, 40, True),
    'hat_volo_d5_224': (295.5, 224, 14, 'volo_d5_224', 1.15, 8e-4, 0.75, 310, False),
    'hat_volo_d5_448': (295.5, 448, 28, 'volo_d5_448', 1.15, 8e-6, 0.75, 40, True),
    'hat_volo_d5_512': (295.5, 512, 32, 'volo_d5_512', 1.15, 8e-6, 0.75, 40, True),
}


def _build(cfg_model, device=None):
    from mmpretrain.registry import MODELS
    if device is None:
        return MODELS.build(cfg_model)
    with torch.device(device):
        return MODELS.build(cfg_model)


@pytest.mark.parametrize('name', sorted(VOLO_ROWS))
def test_volo_config(name):
    from timm.models import get_pretrained_cfg
    params_m, img, label_size, timm_name, crop_pct, lr, dp, epochs, gt = VOLO_ROWS[name]
    cfg = paper_config(osp.join(ROOT, 'configs', f'{name}.py'), 'HATVOLOClassifier')
    assert cfg.model.model_name == timm_name and cfg.model.drop_path_rate == dp
    assert cfg.model.token_label_loss == dict(type='TokenLabelLoss', dense_weight=0.5,
                                              cls_weight=1.0, ground_truth=gt)
    assert cfg.model.mix_token is True
    pre = cfg.model.data_preprocessor
    assert pre.label_size == label_size == img // 16
    assert (pre.mixup_alpha, pre.cutmix_alpha, pre.label_smoothing) == (0.8, 1.0, 0.1)
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == lr and opt.clip_grad is None
    assert opt.optimizer.weight_decay == (0.05 if epochs == 310 else 1e-8)
    assert opt.paramwise_cfg.custom_keys['.pos_embed'] == dict(decay_mult=0.0)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=1024)
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.param_scheduler == [dict(
        type='TimmCosineLR', cosine_epochs=epochs - 10, warmup_epochs=20 if epochs == 310 else 5,
        warmup_lr=1e-6, min_lr=1e-5 if epochs == 310 else 4e-6)]
    pipe = cfg.train_dataloader.dataset.pipeline
    flat = [s for t in pipe for s in (t['transforms'] if t['type'] == 'Compose' else [t])]
    # tlt's order: RandAugment on the whole image (its geometric operations moving the score
    # map), then the crop; flip (which commutes with both in distribution); erasing is in the
    # data preprocessor, after the mixing (tlt's prefetcher)
    assert [t['type'] for t in flat] == [
        'LoadImageFromFile', 'LoadTokenLabel', 'RandomInterpolationRandAugment',
        'TokenLabelRandomResizedCrop', 'RandomFlip', 'PackInputs']
    assert cfg.model.data_preprocessor.erasing == dict(probability=0.25, mode='pixel',
                                                       max_count=1)
    assert pipe[3]['scale'] == img
    policies = [p['type'] for p in flat[2]['policies']]
    assert len(policies) == 15 and {'TokenLabelRotate', 'TokenLabelShear',
                                    'TokenLabelTranslate'} <= set(policies)
    assert not {'Rotate', 'Shear', 'Translate'} & set(policies)  # none moves pixels alone
    assert (flat[2]['num_policies'], flat[2]['magnitude_level'], flat[2]['magnitude_std']) \
        == (2, 9, 0.5)
    # evaluation as the official validate.py: the official model's crop_pct
    assert get_pretrained_cfg(timm_name).input_size[-1] == img
    test = cfg.test_dataloader.dataset.pipeline
    assert test[1]['type'] == 'ResizeEdge' and test[1]['scale'] == math.floor(img / crop_pct)
    assert test[2] == dict(type='PaddedCenterCrop', crop_size=img)
    assert 'HATPhaseHook' in [h['type'] for h in cfg.custom_hooks]
    if epochs == 40:
        assert cfg.load_from.endswith('epoch_310.pth')

    model = _build(cfg.model, device='meta')  # no memory, no initialisation
    n = sum(p.numel() for p in model.parameters())
    pos = model.model.pos_embed
    # the paper repeats the 224 count for its higher resolutions: compare without the growth
    # of the position table (grid (img/16)^2 instead of 14^2)
    extra = (pos.shape[1] * pos.shape[2] - 14 * 14) * pos.shape[3]
    print(f'{name}: {n / 1e6:.3f}M parameters ({(n - extra) / 1e6:.3f}M at the 224 grid)')
    assert abs((n - extra) / 1e6 - params_m) <= 0.1, f'{name}: {n / 1e6:.2f}M'


def test_volo_release_checkpoint_reproduces_timm_logits(tmp_path):
    """A release-format checkpoint (timm training checkpoint of volo_d1_224, random weights)
    converts and gives timm's evaluation logits in the model of configs/hat_volo_d1_224.py."""
    import timm

    from hat_mm.utils import load_weights_strict
    from tools.model_converters.timm_volo_deit_to_mmpretrain import convert_checkpoint
    torch.manual_seed(0)
    ref = timm.create_model('volo_d1_224', pretrained=False).eval()
    with torch.no_grad():  # non-trivial norms and heads
        for m in ref.modules():
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)):
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)
    src = tmp_path / 'hat_volo_d1_224.pth.tar'
    torch.save({'epoch': 309, 'arch': 'volo_d1_224', 'state_dict': ref.state_dict(),
                'args': argparse.Namespace(model='volo_d1', img_size=224, crop_pct=None,
                                           token_label_size=14)}, src)
    dst = tmp_path / 'converted.pth'
    meta = convert_checkpoint(str(src), str(dst))
    assert meta['arch'] == 'volo-d1-224' and meta['config'] == 'configs/hat_volo_d1_224.py'

    cfg = apply_hat(Config.fromfile(osp.join(ROOT, 'configs', 'hat_volo_d1_224.py')))
    model = _build(cfg.model)
    load_weights_strict(model, str(dst))
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)
        got = model(x, mode='tensor')
    err = (got - expected).abs().max().item()
    print(f'volo_d1_224 max logit error {err:.2e}')
    assert err < 1e-4
    # the official prediction: class token + 0.5 * max over the token logits
    with torch.no_grad():
        feats = ref.forward_features(x)
        official = ref.head(feats[:, 0]) + 0.5 * ref.aux_head(feats[:, 1:]).max(1)[0]
    torch.testing.assert_close(got, official, rtol=0, atol=1e-4)


def test_dense_targets_follow_crop_and_flip():
    """roi_align over the crop box, per-token targets row-major, flips applied to the crop."""
    from hat_mm.models.token_label_targets import dense_token_targets, topk_to_dense
    H = W = 8
    C = 8
    # top-1 class of location (r, c) is its column c, top-2 class its row r (smaller logit)
    cols = torch.arange(W).view(1, W).expand(H, W).float()
    rows = torch.arange(H).view(H, 1).expand(H, W).float()
    topk = torch.stack([torch.stack([torch.full((H, W), 20.), torch.full((H, W), 10.)]),
                        torch.stack([cols, rows])])[None].half()  # 1, 2, k=2, H, W
    dense = topk_to_dense(topk.repeat(4, 1, 1, 1, 1), C)
    box = torch.tensor([[0.5, 0.0, 1.0, 0.5]]).repeat(4, 1)  # right half, top half
    cls, tok = dense_token_targets(dense, box, flips=[0, 1, 2, 3], label_size=4)
    assert tok.shape == (4, 16, C) and cls.shape == (4, C)
    torch.testing.assert_close(tok.sum(-1), torch.ones(4, 16))
    top = tok.argmax(-1).view(4, 4, 4)  # sample, token row, token col
    expected_cols = torch.tensor([4, 5, 6, 7])
    assert (top[0] == expected_cols.view(1, 4)).all()  # no flip
    assert (top[1] == expected_cols.flip(0).view(1, 4)).all()  # horizontal
    assert (top[2] == expected_cols.view(1, 4)).all()  # vertical: columns unchanged
    rows_of = tok[..., :4].argmax(-1).view(4, 4, 4)  # second choice among classes 0..3
    assert (rows_of[0] == torch.arange(4).view(4, 1)).all()
    assert (rows_of[2] == torch.arange(4).flip(0).view(4, 1)).all()  # vertical flip
    assert (rows_of[3] == torch.arange(4).flip(0).view(4, 1)).all()
    # the class-token target pools the whole crop: its top classes are the crop's columns
    assert set(cls[0].topk(4).indices.tolist()) == {4, 5, 6, 7}


def test_dense_targets_of_a_non_square_map_and_bad_class_indices():
    """A 4 x 8 map (top-1 class = column): x scales with the width, y with the height. A
    class index outside the model's classes is refused by name."""
    from hat_mm.models.token_label_targets import dense_token_targets, topk_to_dense
    H, W, C = 4, 8, 8
    cols = torch.arange(W).view(1, W).expand(H, W).float()
    topk = torch.stack([torch.full((H, W), 20.)[None], cols[None]])[None]  # 1, 2, k=1, H, W
    dense = topk_to_dense(topk, C)
    box = torch.tensor([[0.5, 0.0, 1.0, 1.0]])  # the right half, every row
    _, tok = dense_token_targets(dense, box, flips=[0], label_size=4)
    top = tok.argmax(-1).view(4, 4)
    assert (top == torch.tensor([4, 5, 6, 7]).view(1, 4)).all()
    with pytest.raises(ValueError, match='class index 8 is outside the 8 classes'):
        topk_to_dense(torch.stack([torch.ones(H, W)[None], torch.full((H, W), 8.)[None]])[None],
                      C)


def test_crop_transform_records_its_box(tmp_path):
    from hat_mm.datasets import LoadTokenLabel, TokenLabelRandomResizedCrop
    h, w = 60, 80
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    img = np.stack([xx * 3, yy * 4, np.zeros_like(xx)], -1).astype(np.uint8)  # x, y coded
    label_dir = tmp_path / 'labels'
    os.makedirs(label_dir / 'cls')
    torch.save(torch.zeros(2, 5, 4, 4).half(), label_dir / 'cls' / 'img.pt')
    results = dict(img=img, img_path=str(tmp_path / 'train' / 'cls' / 'img.png'))
    results = LoadTokenLabel(str(label_dir))(results)
    assert results['token_label'].shape == (2, 5, 4, 4)
    np.random.seed(3)
    out = TokenLabelRandomResizedCrop(scale=40, crop_ratio_range=(0.2, 0.5),
                                      interpolation='nearest')(results)
    x0, y0, x1, y1 = out['token_label_box']
    o = out['img'].astype(float)
    assert abs(o[0, 0, 0] / 3 - x0 * w) <= 1 and abs(o[0, 0, 1] / 4 - y0 * h) <= 1
    assert abs(o[-1, -1, 0] / 3 - (x1 * w - 1)) <= 1.5
    assert abs(o[-1, -1, 1] / 4 - (y1 * h - 1)) <= 1.5
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


GEOMETRIC_OPS = [
    ('TokenLabelRotate', dict(angle=25.0)),
    ('TokenLabelRotate', dict(angle=25.0, random_negative_prob=1.0)),
    ('TokenLabelShear', dict(magnitude=0.3, direction='horizontal')),
    ('TokenLabelShear', dict(magnitude=0.3, direction='vertical', random_negative_prob=1.0)),
    ('TokenLabelTranslate', dict(magnitude=0.3, direction='horizontal')),
    ('TokenLabelTranslate', dict(magnitude=0.25, direction='vertical',
                                 random_negative_prob=1.0)),
]


@pytest.mark.parametrize('op,kwargs', GEOMETRIC_OPS)
def test_geometric_randaugment_moves_the_score_map_with_the_image(op, kwargs):
    """An image painted with its own score map (each 11 x 11 pixel cell of a 6 x 9 grid in
    the colour of its class): after the operation, the class under each cell's centre in
    the image is the class the moved map holds there, and cells whose centre came from
    outside the image hold no score (tlt: values 0 there)."""
    from mmpretrain.registry import TRANSFORMS
    h, w, cell = 6, 9, 11
    H, W = h * cell, w * cell
    classes = torch.arange(h * w).view(h, w)
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = classes.repeat_interleave(cell, 0).repeat_interleave(cell, 1).numpy()
    img[..., 1] = 200  # inside the original image
    label = torch.stack([torch.ones(1, h, w), classes[None].float()]).half()  # [2, k=1, h, w]
    transform = TRANSFORMS.build(dict(type=op, prob=1.0, pad_val=0, interpolation='nearest',
                                      **{'random_negative_prob': 0.0, **kwargs}))
    out = transform(dict(img=img.copy(), token_label=label.clone(),
                         token_label_box=np.array([0, 0, 1, 1], np.float32)))
    moved = out['token_label']
    assert moved.shape == label.shape and moved.dtype == label.dtype
    centres = out['img'][cell // 2::cell, cell // 2::cell]  # [h, w, 3] at the cell centres
    inside = torch.from_numpy(centres[..., 1] == 200)
    assert 0.3 < inside.float().mean() < 1  # the operation moved part of the image out
    seen = torch.from_numpy(centres[..., 0].astype(np.int64))
    agree = (moved[1, 0].long() == seen)[inside].float().mean()
    assert agree >= 0.9, agree  # boundaries: the image's nearest pixel vs the nearest cell
    assert (moved[0, 0][~inside] == 0).float().mean() >= 0.9
    assert (moved[0, 0][inside] == 1).float().mean() >= 0.9
    # the unmoved map would not match the moved image: the check above can fail
    assert (classes == seen)[inside].float().mean() < 0.5


def test_geometric_randaugment_keeps_the_image_and_random_numbers_of_mmpretrain():
    from mmpretrain.registry import TRANSFORMS
    img = np.random.RandomState(0).randint(0, 255, (40, 56, 3)).astype(np.uint8)
    label = torch.rand(2, 5, 4, 4).half()
    for plain, ours, extra in [('Rotate', 'TokenLabelRotate', {}),
                               ('Shear', 'TokenLabelShear', dict(direction='vertical')),
                               ('Translate', 'TokenLabelTranslate', {})]:
        cfg = dict(magnitude_range=(0, 0.3), prob=0.7, magnitude_std=0.5, **extra)
        a, b = TRANSFORMS.build(dict(type=plain, **cfg)), TRANSFORMS.build(dict(type=ours, **cfg))
        for seed in range(6):
            np.random.seed(seed)
            ra = a(dict(img=img.copy()))
            next_a = np.random.rand()  # the same numbers drawn: the same next one
            np.random.seed(seed)
            rb = b(dict(img=img.copy(), token_label=label.clone()))
            assert np.array_equal(ra['img'], rb['img']) and np.random.rand() == next_a
        # after a crop the whole-image map can no longer be moved: refused with the fix
        np.random.seed(0)
        op = TRANSFORMS.build(dict(type=ours, magnitude_range=(0.1, 0.3), prob=1.0, **extra))
        with pytest.raises(ValueError, match='already cropped.*before TokenLabelRandomResized'):
            op(dict(img=img.copy(), token_label=label.clone(),
                    token_label_box=np.array([0.1, 0, 1, 1], np.float32)))
        with pytest.raises(ValueError, match='already flipped.*and RandomFlip'):  # flip first
            op(dict(img=img.copy(), token_label=label.clone(), flip=True))


# ----------------------------------------------------------------------------- demo data
TINY_ARCH = dict(layers=(1, 1, 1, 1), embed_dims=(16, 32, 32, 32), num_heads=(2, 4, 4, 4),
                 img_size=64, stem_hidden_dim=8)


def _teacher_options(digits_root):
    return {
        'model.backbone.arch': dict(embed_dims=32, num_layers=1, num_heads=2,
                                    feedforward_channels=64),
        'model.head.in_channels': 32,
        'train_dataloader.dataset.data_root': digits_root,
    }


@pytest.fixture(scope='module')
def digits_token_labels(digits_root, tmp_path_factory):
    """Score maps of the demo training images from a small ViT teacher (the tool)."""
    from mmpretrain.registry import MODELS

    from tools.dataset_converters.make_token_labels import make_token_labels
    tmp = tmp_path_factory.mktemp('token_labels')
    opts = _teacher_options(digits_root)
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(opts)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    teacher = MODELS.build(cfg.model)
    ckpt = str(tmp / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, ckpt)
    out = str(tmp / 'maps')
    info = make_token_labels(DEMO_CONFIG, ckpt, out, img_size=32, topk=5, batch_size=512,
                             cfg_options=opts)
    return out, info


def test_make_token_labels_writes_tlt_format(digits_token_labels, digits_root):
    out, info = digits_token_labels
    n_train = len(open(osp.join(digits_root, 'meta', 'train.txt')).read().split('\n')) - 1
    assert info == dict(files=n_train, grid=(8, 8), topk=5, classes=10)
    one = osp.join(out, 'digit_3', sorted(os.listdir(osp.join(out, 'digit_3')))[0])
    m = torch.load(one, weights_only=True)
    assert m.dtype == torch.float16 and m.shape == (2, 5, 8, 8)
    idx = m[1].long()
    assert idx.min() >= 0 and idx.max() < 10
    assert (m[0][:-1] >= m[0][1:]).all()  # top-k values in decreasing order


def _tiny_volo_cfg(digits_root, label_root, mixup, cutmix, K=3):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'hat_volo_d1_224.py'))
    cfg.model.pop('model_name')
    cfg.model.arch = dict(TINY_ARCH)
    cfg.model.num_classes = 10
    cfg.model.drop_path_rate = 0.0
    # no erasing: the references here are of the mixing and the HAT step (erasing after the
    # mixing: tests/test_erasing_preprocessor.py)
    cfg.model.data_preprocessor.update(num_classes=10, label_size=4, mean=[79.0] * 3,
                                       std=[87.0] * 3, mixup_alpha=mixup, cutmix_alpha=cutmix,
                                       erasing=None)
    cfg.hat = dict(cfg.hat, adv_iters=K)
    ds = cfg.train_dataloader.dataset
    ds.data_root = digits_root
    ds.metainfo = dict(classes=[f'digit_{i}' for i in range(10)])
    ds.pipeline[1]['label_root'] = label_root
    ds.pipeline[3]['scale'] = 64  # TokenLabelRandomResizedCrop
    return apply_hat(cfg)


def _demo_batch(cfg, n=8, seed=0):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(seed)
    torch.manual_seed(seed)
    idx = np.random.permutation(len(dataset))[:n]
    return pseudo_collate([dataset[int(i)] for i in idx])


def _seeded(seed=123):
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- reference
def ref_targets(samples, C, label_size, smoothing, mixup, cutmix, x):
    """Targets and mixed images written out (timm batch-mode mixup/cutmix, tlt targets); ``x``
    is the uint8 batch as floats, mixed as tlt's collate does (mixup rounded to uint8)."""
    from torchvision.ops import roi_align
    labels = torch.cat([s.gt_label[:1] for s in samples])
    gt = F.one_hot(labels, C).float() * (1 - smoothing) + smoothing / C
    cls_t, tok_t = [], []
    for s in samples:
        v, i = s.token_label[0].float(), s.token_label[1].float().round().long()
        dense = torch.zeros(C, *v.shape[-2:]).scatter_(0, i, v)[None]
        Hm, Wm = dense.shape[-2:]
        x0, y0, x1, y1 = [float(t) for t in s.token_label_box]
        roi = torch.tensor([[0, x0 * Wm - .5, y0 * Hm - .5, x1 * Wm - .5, y1 * Hm - .5]])
        t = roi_align(dense, roi, (label_size, label_size), 1.0, -1, False)[0]
        c = roi_align(dense, roi, (1, 1), 1.0, -1, False).flatten()
        if s.flip:
            assert s.flip_direction == 'horizontal'
            t = t.flip(-1)
        tok_t.append(F.softmax(t.flatten(1).t(), -1) * (1 - smoothing) + smoothing / C)
        cls_t.append(F.softmax(c, -1) * (1 - smoothing) + smoothing / C)
    cls_t, tok_t = torch.stack(cls_t), torch.stack(tok_t)
    # timm Mixup._params_per_batch (mix_prob 1) with one of the two on
    assert np.random.rand() < 1.0
    if cutmix:
        lam = np.random.beta(cutmix, cutmix)
        h, w = x.shape[-2:]
        r = np.sqrt(1 - lam)
        ch, cw = int(h * r), int(w * r)
        cy, cx = np.random.randint(0, h), np.random.randint(0, w)
        yl, yh = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        xl, xh = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        lam = 1 - (yh - yl) * (xh - xl) / (h * w)
        x = x.clone()
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
    else:
        lam = np.random.beta(mixup, mixup)
        x = (lam * x + (1 - lam) * x.flip(0)).round()
    mix = (lambda t: lam * t + (1 - lam) * t.flip(0))
    return x, mix(gt), mix(cls_t), mix(tok_t)


def ref_mix_token_box(grid):
    """The official VOLO rand_bbox with scale 2, written out."""
    lam = np.random.beta(1.0, 1.0)
    cut = int(grid * np.sqrt(1. - lam))
    cx, cy = np.random.randint(grid), np.random.randint(grid)
    return (int(np.clip(cx - cut // 2, 0, grid)), int(np.clip(cy - cut // 2, 0, grid)),
            int(np.clip(cx + cut // 2, 0, grid)), int(np.clip(cy + cut // 2, 0, grid)))


def ref_volo_forward(volo, x, boxes):
    """The official VOLO train-mode forward with MixToken (timm's submodules): each call draws
    its own box (``ref_mix_token_box``), records it in ``boxes`` and returns it."""
    box = ref_mix_token_box(int(volo.patch_embed(x[:1]).shape[-1]) // 2)
    boxes.append(box)
    x = volo.patch_embed(x).permute(0, 2, 3, 1)
    b1, b2, b3, b4 = box
    tmp = x.clone()
    tmp[:, 2 * b1:2 * b3, 2 * b2:2 * b4] = x.flip(0)[:, 2 * b1:2 * b3, 2 * b2:2 * b4]
    x = volo.norm(volo.forward_cls(volo.forward_tokens(tmp)))
    cls = volo.head(x[:, 0])
    aux = volo.aux_head(x[:, 1:])
    g = int(aux.shape[1] ** 0.5)
    aux = aux.reshape(aux.shape[0], g, g, -1)
    tmp = aux.clone()
    tmp[:, b1:b3, b2:b4] = aux.flip(0)[:, b1:b3, b2:b4]
    return cls, tmp.reshape(aux.shape[0], g * g, -1), box


def reference_hat_volo(model, x, gt, cls_t, tok_t, K):
    """docs/hat_update.md with the token-labeling loss (tlt TokenLabelCrossEntropy, dense weight
    0.5) as CE_k, a new MixToken box in each of the K + 1 forwards (the official HAT train.py);
    returns (param grads, deltas used, the boxes drawn: clean forward first)."""
    volo = model.model
    params = [p for p in model.parameters() if p.requires_grad]
    N = tok_t.shape[1]
    boxes = []

    def ce(out, v):
        cls, aux, box = out
        lam = 1 - (box[2] - box[0]) * (box[3] - box[1]) / N
        target_cls = lam * cls_t + (1 - lam) * cls_t.flip(0) if lam < 1 else cls_t
        c = (-target_cls * F.log_softmax(cls, -1)).sum(-1).mean()
        a = (-tok_t * F.log_softmax(aux, -1)).sum(-1).mean()
        return c + 0.5 * a

    grads, deltas = reference_hat_loop(lambda v: ref_volo_forward(volo, v, boxes), ce, x,
                                       params, K, logits=lambda out: out[0])
    return grads, deltas, boxes


@pytest.mark.parametrize('mixing', ['mixup', 'cutmix'])
def test_hat_volo_train_step_matches_reference(digits_root, digits_token_labels, mixing,
                                               monkeypatch):
    """Demo data with score maps from the tool -> pipeline -> TokenLabelDataPreprocessor ->
    the HAT step of HATVOLOClassifier, against the reference written out above."""
    from mmpretrain.registry import MODELS
    mixup, cutmix = (0.8, 0.0) if mixing == 'mixup' else (0.0, 1.0)
    K = 3
    cfg = _tiny_volo_cfg(digits_root, digits_token_labels[0], mixup, cutmix, K)
    batch = _demo_batch(cfg)
    assert batch['data_samples'][0].token_label.shape == (2, 5, 8, 8)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    model.set_hat_phase(True)
    ref = copy.deepcopy(model)

    _seeded()
    data = ref.data_preprocessor(copy.deepcopy(batch), True)
    x = data['inputs']
    after_mixing = np.random.get_state()  # the MixToken boxes are drawn next, in train_step
    _seeded()
    raw = ref.data_preprocessor.cast_data(copy.deepcopy(batch))
    pixels = torch.stack(raw['inputs']).flip(1).float()
    x_ref, gt, cls_t, tok_t = ref_targets(raw['data_samples'], 10, 4, 0.1, mixup, cutmix,
                                          pixels)
    torch.testing.assert_close(x, (x_ref - 79.0) / 87.0)  # the same mixed images
    samples = data['data_samples']
    torch.testing.assert_close(torch.stack([s.gt_score for s in samples]), gt)
    torch.testing.assert_close(torch.stack([s.token_label_cls for s in samples]), cls_t)
    torch.testing.assert_close(torch.stack([s.token_label_dense for s in samples]), tok_t)

    np.random.set_state(after_mixing)
    grads, ref_deltas, ref_boxes = reference_hat_volo(ref, x, gt, cls_t, tok_t, K)
    assert len(ref_boxes) == K + 1 and len(set(ref_boxes)) > 1  # boxes differ between passes
    expected = [p.detach() - 0.5 * g for p, g in zip(ref.parameters(), grads)]

    # the update itself, with the deltas (hat_backward on the preprocessed batch)
    probe = copy.deepcopy(ref)
    probe.zero_grad()
    np.random.set_state(after_mixing)
    log_vars, deltas = hat_backward(
        forward=lambda v: probe(v, mode='tensor'),
        clean_forward=lambda v: probe(v, mode='tensor'),
        classification_loss=lambda out, v: probe.hat_classification_loss(out, samples, v)['loss'],
        inputs=x, backward=lambda loss, last: loss.backward(), hat=probe.hat, num_iters=K,
        logits_of=probe.hat_kl_logits)
    assert len(deltas) == len(ref_deltas) == K - 1
    for d, rd in zip(deltas, ref_deltas):
        assert 0 < d.abs().max() <= EPS + 1e-7
        torch.testing.assert_close(d, rd, rtol=0, atol=1e-7)
    for (name, p), g in zip(probe.named_parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6, msg=name)

    # the runner's path: preprocessing + K + 1 forwards, each with its own box + one SGD step
    import hat_mm.models.volo as volo_mod
    drawn = []
    sample = volo_mod.sample_mix_token_box
    monkeypatch.setattr(volo_mod, 'sample_mix_token_box',
                        lambda *a: drawn.append(sample(*a)) or drawn[-1])
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5))
    _seeded()
    log_vars = model.train_step(copy.deepcopy(batch), optim)
    assert drawn == ref_boxes
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-4, atol=1e-6, msg=name)
    assert {'loss_tl_cls', 'loss_tl_aux', 'loss_kl_adv'} <= set(log_vars)
    assert all(torch.isfinite(v) for v in log_vars.values())
    # a few more iterations run
    for seed in (1, 2):
        _seeded(seed)
        log_vars = model.train_step(copy.deepcopy(batch), optim)
        assert torch.isfinite(log_vars['loss'])


def test_every_forward_draws_its_own_mix_token_box(digits_root, digits_token_labels,
                                                   monkeypatch):
    """As in the official HAT train.py: the clean forward and each of the K perturbed forwards
    of one iteration draw their own MixToken box, and each pass's loss uses its own box."""
    from mmpretrain.registry import MODELS

    import hat_mm.models.volo as volo_mod
    cfg = _tiny_volo_cfg(digits_root, digits_token_labels[0], 0.8, 1.0, K=3)
    batch = _demo_batch(cfg, n=4)
    model = MODELS.build(cfg.model)
    model.train()
    model.set_hat_phase(True)
    queue = [(0, 1, 3, 4), (1, 0, 2, 2), (0, 0, 4, 1), (2, 2, 4, 4)]
    draws = []
    monkeypatch.setattr(volo_mod, 'sample_mix_token_box',
                        lambda *a: draws.append(queue[len(draws) % 4]) or draws[-1])
    boxes, loss_boxes = [], []
    real_forward, real_losses = model.forward_train, model.token_label_losses

    def recording_forward(x, box=None):
        out = real_forward(x, box)
        boxes.append(out[2])
        return out

    def recording_losses(output, data_samples):
        loss_boxes.append(output[2])
        return real_losses(output, data_samples)

    model.forward_train, model.token_label_losses = recording_forward, recording_losses
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train_step(copy.deepcopy(batch), optim)
    assert boxes == queue  # clean + K = 3 forwards, each with the box it drew
    assert loss_boxes == queue[1:]  # the K passes' losses, each with its forward's box
    model.train_step(copy.deepcopy(batch), optim)
    assert len(draws) == 8
    # after the adversarial phase: the clean forward and one pass, a box each
    model.set_hat_phase(False)
    model.train_step(copy.deepcopy(batch), optim)
    assert len(draws) == 10


def test_train_and_test_tools_with_token_labels(digits_root, digits_token_labels, tmp_path):
    """tools/train.py (HATRunner, DataLoader, checkpoint) and tools/test.py on a tiny VOLO
    config that inherits configs/hat_volo_d1_224.py, with the tool's score maps."""
    import json
    import sys

    from .runner_utils import run_tool, small_run_options, train
    config = tmp_path / 'tiny_volo_digits.py'
    config.write_text(f'''
_base_ = [{osp.join(ROOT, 'configs', 'hat_volo_d1_224.py')!r}]
classes = [f'digit_{{i}}' for i in range(10)]
model = dict(model_name=None, arch={TINY_ARCH!r}, num_classes=10, drop_path_rate=0.0,
             data_preprocessor=dict(num_classes=10, label_size=4, mean=[79.0] * 3,
                                    std=[87.0] * 3))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadTokenLabel', label_root={digits_token_labels[0]!r}),
    {{{{_base_.token_label_randaugment}}}},  # the configs' RandAugment, moving the map
    dict(type='TokenLabelRandomResizedCrop', scale=64, backend='pillow',
         interpolation='bicubic'),
    {{{{_base_.train_augments}}}},  # the configs' flip
    dict(type='PackInputs', algorithm_keys=('token_label', 'token_label_box')),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=66, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='PaddedCenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=16, dataset=dict(metainfo=dict(classes=classes),
                                                    pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, dataset=dict(metainfo=dict(classes=classes),
                                                  pipeline=test_pipeline))
test_dataloader = val_dataloader
''')
    work = tmp_path / 'work'
    options = small_run_options(digits_root, train_images=32, val_images=32, epochs=1)
    res = train(str(config), work, options)
    assert res.returncode == 0, res.stdout[-4000:]
    assert 'loss_tl_aux' in res.stdout and 'loss_kl_adv' in res.stdout
    ckpt = work / 'epoch_1.pth'
    state = torch.load(ckpt, map_location='cpu')['state_dict']
    assert 'pos_embed' in state and 'aux_head.weight' in state  # timm's keys
    metrics_file = tmp_path / 'metrics.json'
    res = run_tool([sys.executable, 'tools/test.py', str(config), str(ckpt), '--work-dir',
                    str(tmp_path / 'test'), '--out', str(metrics_file), '--cfg-options',
                    *options])
    assert res.returncode == 0, res.stdout[-4000:]
    assert 0.0 <= json.loads(metrics_file.read_text())['accuracy/top1'] <= 100.0


def test_fine_tuning_load_resizes_the_position_table(tmp_path):
    """configs/hat_volo_*_{384,448,512}.py start from the 224 weights (load_from): the
    position table is resized bicubically, everything else is copied; tools/test.py's strict
    loader still refuses a checkpoint of another resolution."""
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

    from hat_mm.utils import CheckpointError, load_weights_strict
    torch.manual_seed(0)
    small = MODELS.build(dict(type='VOLOClassifier', arch=TINY_ARCH, num_classes=10))
    big = MODELS.build(dict(type='VOLOClassifier', arch=dict(TINY_ARCH, img_size=96),
                            num_classes=10))
    ckpt = tmp_path / 'small.pth'
    torch.save({'state_dict': small.state_dict()}, ckpt)
    with pytest.warns(UserWarning, match='resizing pos_embed'):
        load_checkpoint(big, str(ckpt), map_location='cpu', strict=True)
    assert big.model.pos_embed.shape == (1, 6, 6, 32)
    expected = F.interpolate(small.model.pos_embed.permute(0, 3, 1, 2), size=(6, 6),
                             mode='bicubic', align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(big.model.pos_embed.detach(), expected)
    torch.testing.assert_close(big.model.head.weight, small.model.head.weight)
    with pytest.raises(CheckpointError, match='pos_embed'):
        load_weights_strict(big, str(ckpt))


def test_make_token_labels_decodes_images_as_the_data_configs_pipeline(digits_root, tmp_path):
    """The maps cover the image as training decodes it: the tool loads the images with the
    data config's own LoadImageFromFile step (the paper configs: PIL, no EXIF rotation)."""
    from unittest import mock

    from mmpretrain.registry import DATASETS, MODELS

    from tools.dataset_converters.make_token_labels import make_token_labels
    load = dict(type='LoadImageFromFile', imdecode_backend='pillow',
                color_type='color_ignore_orientation')
    opts = dict(_teacher_options(digits_root), **{'train_dataloader.dataset.pipeline.0': load})
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(opts)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, ckpt)

    class Built(Exception):
        pass

    with mock.patch.object(DATASETS, 'build', side_effect=Built) as build, \
            pytest.raises(Built):
        make_token_labels(DEMO_CONFIG, ckpt, str(tmp_path / 'maps'), img_size=32,
                          cfg_options=opts)
    assert build.call_args.args[0].pipeline[0] == load

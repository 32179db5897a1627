"""Mixup/cutmix (timm's batch mode) and then random erasing, on the normalised batch, as the
official loaders do them."""
import math
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from timm.data import FastCollateMixup
from timm.loss import SoftTargetCrossEntropy

import hat_mm  # noqa: F401

from .runner_utils import ROOT

OFFICIAL = dict(probability=0.25, mode='pixel', max_count=1)


def batch(values, size=64):
    """One image per value, every pixel of it that value (uint8), with labels."""
    inputs = [torch.full((3, size, size), float(v)).to(torch.uint8) for v in values]
    samples = [DataSample().set_gt_label(i % 10) for i in range(len(values))]
    return dict(inputs=inputs, data_samples=samples)


def reference_erasing(x, probability, min_area=0.02, max_area=1 / 3, min_aspect=0.3):
    """timm's RandomErasing, mode 'pixel', one block, in plain PyTorch and Python's random."""
    x = x.clone()
    n, c, H, W = x.shape
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    for i in range(n):
        if random.random() > probability:
            continue
        for _ in range(10):
            area = random.uniform(min_area, max_area) * H * W
            aspect = math.exp(random.uniform(*log_aspect))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < W and h < H:
                top, left = random.randint(0, H - h), random.randint(0, W - w)
                x[i, :, top:top + h, left:left + w] = torch.empty(c, h, w).normal_()
                break
    return x


def build(**kwargs):
    return MODELS.build(dict(type='EraseAfterMixDataPreprocessor', mean=[100.] * 3,
                             std=[50.] * 3, **kwargs))


def test_erasing_equals_the_reference_on_the_normalised_batch():
    values = list(range(20, 240, 11))
    pre = build(erasing=dict(OFFICIAL, probability=0.6))
    random.seed(3)
    torch.manual_seed(3)
    out = pre(batch(values), training=True)['inputs']
    normalised = torch.stack([torch.full((3, 64, 64), (v - 100.) / 50.) for v in values])
    random.seed(3)
    torch.manual_seed(3)
    expected = reference_erasing(normalised, 0.6)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    erased = [i for i in range(len(values)) if not torch.equal(out[i], normalised[i])]
    assert 0 < len(erased) < len(values)  # some erased, some not (p = 0.6)
    # evaluation: no erasing
    assert torch.equal(pre(batch(values), training=False)['inputs'], normalised)


@pytest.mark.parametrize('kind', ['timm batch mode', 'mmpretrain batch_augments',
                                  'token labeling'])
def test_the_erased_block_is_pure_noise_over_the_mixed_image(kind):
    """Erasing after mixup: inside the block, N(0, 1) whatever the two images were. (Erased
    before the mixing, the block would be lam * noise + (1 - lam) * the partner: a smaller
    spread around the partner's value.)"""
    torch.manual_seed(0)
    random.seed(0)
    values = [30 + 12 * i for i in range(16)]
    erasing = dict(OFFICIAL, probability=1.0)
    if kind == 'token labeling':
        pre = MODELS.build(dict(type='TokenLabelDataPreprocessor', num_classes=10,
                                mean=[100.] * 3, std=[50.] * 3, mixup_alpha=0.8,
                                cutmix_alpha=0.0, erasing=erasing))
    elif kind == 'timm batch mode':
        pre = build(erasing=erasing, num_classes=10, mixup_alpha=0.8)
    else:
        pre = build(erasing=erasing, num_classes=10,
                    batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8)]))
    out = pre(batch(values), training=True)['inputs']
    noise = []
    for image in out:
        background = image.flatten(1).mode(dim=1).values  # the mixed constant, per channel
        mixed = torch.isclose(image, background.view(3, 1, 1), atol=1e-5)
        assert (~mixed).any()  # every image has its block (probability 1)
        noise.append(image[~mixed])
    noise = torch.cat(noise)
    assert noise.numel() > 5000
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 1) < 0.05
    # the images were mixed before: backgrounds between the normalised values
    backgrounds = torch.stack([image[0].flatten().mode().values for image in out])
    originals = torch.tensor([(v - 100.) / 50. for v in values])
    assert not torch.allclose(backgrounds, originals)


def test_bad_erasing_arguments_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown \['prob'\].*probability"):
        build(erasing=dict(prob=0.25))
    with pytest.raises(ValueError, match='probability=2: expected 0 to 1'):
        build(erasing=dict(probability=2))
    with pytest.raises(ValueError, match="mode='noise'"):
        build(erasing=dict(probability=0.25, mode='noise'))
    assert build().erasing is None and build(erasing={}).erasing is None


# -- the mixing ----------------------------------------------------------------------------
def noise_batch(n, size=16, seed=0):
    """``n`` random uint8 images (so every pixel tells which image it came from), labels."""
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
              for _ in range(n)]
    samples = [DataSample().set_gt_label(i % 10) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def timm04_rand_bbox(img_shape, lam, margin=0., count=None):
    """The CutMix box of timm 0.4 (what the official code ran): it ends at ``c + cut // 2``
    (timm 1.0 ends it at ``c + (cut + 1) // 2``)."""
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    cy, cx = np.random.randint(0, img_h, size=count), np.random.randint(0, img_w, size=count)
    return (np.clip(cy - cut_h // 2, 0, img_h), np.clip(cy + cut_h // 2, 0, img_h),
            np.clip(cx - cut_w // 2, 0, img_w), np.clip(cx + cut_w // 2, 0, img_w))


def official_collate(data, seed, **kwargs):
    """The official loader's mixing: timm's ``FastCollateMixup`` in batch mode on the uint8
    images, then the prefetcher's normalisation (mean 100, std 50 here)."""
    np.random.seed(seed)
    batch = [(img.numpy(), s.gt_label.item())
             for img, s in zip(data['inputs'], data['data_samples'])]
    pixels, targets = FastCollateMixup(**kwargs)(batch)
    return (pixels.float() - 100.) / 50., targets


@pytest.mark.parametrize('mixup_alpha,cutmix_alpha', [(0.8, 1.0), (0.8, 0.0), (0.0, 1.0)])
def test_mixing_equals_the_official_collate_mixup(mixup_alpha, cutmix_alpha, monkeypatch):
    """Images and targets equal timm's ``FastCollateMixup(mode='batch')`` with timm 0.4's CutMix
    box (the official loader's mixing: its draws, the reversed batch as partner, mixup images
    rounded to uint8, the corrected cutmix lam); with the paper configs' head loss the loss
    equals timm's smoothed targets under SoftTargetCrossEntropy, the official loss."""
    monkeypatch.setattr('timm.data.mixup.rand_bbox', timm04_rand_bbox)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'hat_swin_t.py'))
    head_loss = MODELS.build(cfg.model.head.loss)
    pre = build(num_classes=10, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    official = dict(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=1.0,
                    switch_prob=0.5, mode='batch', num_classes=10)
    seen = set()
    for seed in range(8):
        data = noise_batch(8, seed=seed)
        np.random.seed(seed)
        out = pre(data, training=True)
        normalised = (torch.stack(data['inputs']).float() - 100.) / 50.
        images, targets = official_collate(data, seed, label_smoothing=0.0, **official)
        torch.testing.assert_close(out['inputs'], images, rtol=0, atol=1e-5)
        scores = torch.stack([s.gt_score for s in out['data_samples']])
        torch.testing.assert_close(scores, targets, rtol=0, atol=1e-6)
        _, smoothed = official_collate(data, seed, label_smoothing=0.1, **official)
        logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(head_loss(logits, scores),
                                   SoftTargetCrossEntropy()(logits, smoothed))
        kept = ((out['inputs'] - normalised).abs() < 1e-6).all(1)  # pixels left as they were
        seen.add('cutmix' if kept.any() else 'mixup')  # mixup changes every pixel
    if mixup_alpha and cutmix_alpha:
        assert seen == {'mixup', 'cutmix'}  # one or the other per batch


def test_mixing_pairs_each_image_with_the_reversed_batch_rounds_odd_sizes_included():
    pre = build(num_classes=10, mixup_alpha=0.8)
    data = noise_batch(5)
    np.random.seed(0)
    out = pre(data, training=True)
    x = (torch.stack(data['inputs']).float() - 100.) / 50.
    scores = torch.stack([s.gt_score for s in out['data_samples']])
    lam = scores[0, 0].item()  # image 0 has label 0, its partner (image 4) label 4
    assert 0 < lam < 1 and scores[0, 4].item() == pytest.approx(1 - lam)
    pixels = torch.stack(data['inputs']).float()
    mixed = (lam * pixels + (1 - lam) * pixels.flip(0)).round()  # whole uint8 levels
    torch.testing.assert_close(out['inputs'], (mixed - 100.) / 50.)
    assert not torch.allclose(out['inputs'], lam * x + (1 - lam) * x.flip(0))  # rounded
    torch.testing.assert_close(out['inputs'][2], x[2])  # the middle image is its own partner
    # a float batch has no pixel levels: mixed, not rounded
    data = noise_batch(5)
    data['inputs'] = [img.float() + 0.3 for img in data['inputs']]
    np.random.seed(0)
    out = pre(data, training=True)
    x = (torch.stack(data['inputs']) - 100.) / 50.
    torch.testing.assert_close(out['inputs'], lam * x + (1 - lam) * x.flip(0))
    # evaluation: no mixing, no soft targets
    data = noise_batch(5)
    evaluated = pre(data, training=False)
    torch.testing.assert_close(evaluated['inputs'], (torch.stack(data['inputs']).float() - 100.)
                               / 50.)
    assert 'gt_score' not in evaluated['data_samples'][0]


def test_bad_mixing_arguments_are_refused_with_the_fix():
    with pytest.raises(ValueError, match='would mix it again: set model.train_cfg=None'):
        build(num_classes=10, mixup_alpha=0.8,
              batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8)]))
    with pytest.raises(ValueError, match='needs num_classes'):
        build(cutmix_alpha=1.0)
    with pytest.raises(ValueError, match=r'mixup_alpha=-0.1: expected a number >= 0'):
        build(num_classes=10, mixup_alpha=-0.1)
    with pytest.raises(ValueError, match=r'switch_prob=1.5: expected a number >= 0 and <= 1'):
        build(num_classes=10, mixup_alpha=0.8, switch_prob=1.5)
    pre = build(num_classes=10)  # off by default: the batch passes as it is
    data = noise_batch(4)
    out = pre(data, training=True)
    assert 'gt_score' not in out['data_samples'][0]


@pytest.mark.parametrize('type_', ['EraseAfterMixDataPreprocessor', 'TokenLabelDataPreprocessor'])
@pytest.mark.parametrize('non_blocking', [False, True])
def test_non_blocking_reaches_the_copy_to_the_device(type_, non_blocking):
    """``non_blocking`` (which mmpretrain's ClsDataPreprocessor does not take) is what the
    batch's copy to the device is called with; the batch is the same either way."""
    calls = []

    class Spy(torch.Tensor):
        def to(self, *args, **kwargs):
            calls.append(kwargs.get('non_blocking'))
            return torch.Tensor(self).to(*args, **kwargs)

    pre = MODELS.build(dict(type=type_, mean=[100.] * 3, std=[50.] * 3, num_classes=10,
                            mixup_alpha=0., cutmix_alpha=0., non_blocking=non_blocking))
    data = batch([10, 200])
    data['inputs'] = torch.stack(data['inputs']).as_subclass(Spy)
    out = pre(data, training=False)
    assert calls == [non_blocking]
    expected = (torch.stack(batch([10, 200])['inputs']).float() - 100.) / 50.
    assert torch.equal(torch.Tensor(out['inputs']), expected)

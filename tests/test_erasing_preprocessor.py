"""Random erasing after the mixing, on the normalised batch, as the official loaders do it."""
import math
import random

import pytest
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import hat_mm  # noqa: F401

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


@pytest.mark.parametrize('kind', ['mmpretrain batch_augments', 'token labeling'])
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

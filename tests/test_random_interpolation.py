"""timm's ``interpolation='random'`` (the official --train-interpolation) in the random
resized crop and RandAugment, against plain PIL / OpenCV references."""
import itertools

import cv2
import numpy as np
import pytest
from mmpretrain.datasets.transforms import RandAugment, RandomResizedCrop
from PIL import Image

import hat_mm  # noqa: F401
from hat_mm.datasets.transforms import (RandomInterpolationRandAugment,
                                        RandomInterpolationResizedCrop,
                                        TokenLabelRandomResizedCrop)

PIL_FILTERS = {'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC}
CV2_FLAGS = {'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC}


def noise_image(h=40, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize('crop_type', [RandomInterpolationResizedCrop,
                                       TokenLabelRandomResizedCrop])
def test_crop_draws_bilinear_or_bicubic_for_each_image(crop_type):
    img = noise_image()
    # the whole image is the crop, so only the interpolation is random
    crop = crop_type(scale=16, crop_ratio_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0),
                     backend='pillow', interpolation='random')
    references = {name: np.asarray(Image.fromarray(img).resize((16, 16), f))
                  for name, f in PIL_FILTERS.items()}
    assert not np.array_equal(references['bilinear'], references['bicubic'])
    np.random.seed(0)
    drawn = []
    for _ in range(200):
        out = crop(dict(img=img.copy()))['img']
        names = [n for n, ref in references.items() if np.array_equal(out, ref)]
        assert len(names) == 1, 'the output is neither the bilinear nor the bicubic resize'
        drawn.append(names[0])
    assert 70 < drawn.count('bilinear') < 130, drawn.count('bilinear')  # equal odds
    assert 'interpolation=random' in repr(crop)


def test_fixed_interpolation_is_mmpretrains_crop_random_numbers_included():
    img = noise_image(50, 30)
    ours = RandomInterpolationResizedCrop(scale=16, backend='pillow', interpolation='bicubic')
    theirs = RandomResizedCrop(scale=16, backend='pillow', interpolation='bicubic')
    for seed in range(5):
        np.random.seed(seed)
        a = ours(dict(img=img.copy()))['img']
        np.random.seed(seed)
        b = theirs(dict(img=img.copy()))['img']
        np.testing.assert_array_equal(a, b)


def _shear(img, magnitude, name):
    """A horizontal shear, as cv2 does it (mmcv.imshear's matrix, black border)."""
    matrix = np.float32([[1, magnitude, 0], [0, 1, 0]])
    return cv2.warpAffine(img, matrix, (img.shape[1], img.shape[0]), borderValue=(0, 0, 0),
                          flags=CV2_FLAGS[name])


def test_randaugment_draws_for_each_application_of_a_geometric_operation():
    img = noise_image(24, 24)
    shear = dict(type='Shear', magnitude=0.3, prob=1.0, random_negative_prob=0.0,
                 direction='horizontal')
    augment = RandomInterpolationRandAugment(
        policies=[shear], num_policies=2, magnitude_level=9,
        hparams=dict(pad_val=0, interpolation='random'))
    references = {(first, second): _shear(_shear(img, 0.3, first), 0.3, second)
                  for first, second in itertools.product(CV2_FLAGS, repeat=2)}
    np.random.seed(0)
    seen = set()
    for _ in range(100):
        out = augment(dict(img=img.copy()))['img']
        names = [k for k, ref in references.items() if np.array_equal(out, ref)]
        assert len(names) == 1, 'not two shears with bilinear/bicubic each'
        seen.add(names[0])
    # one draw per application: the two shears of one image can differ
    assert seen == set(references)


def test_randaugment_colour_operations_are_left_alone():
    augment = RandomInterpolationRandAugment(
        policies='timm_increasing', num_policies=2, magnitude_level=9,
        hparams=dict(pad_val=128, interpolation='random'))
    with_interpolation = sorted(type(op).__name__ for op in augment.transforms
                                if hasattr(op, 'interpolation'))
    assert with_interpolation == ['Rotate', 'Shear', 'Shear', 'Translate', 'Translate']
    np.random.seed(1)
    for _ in range(20):
        out = augment(dict(img=noise_image(32, 32)))
        assert out['img'].shape == (32, 32, 3) and out['img'].dtype == np.uint8


def test_fixed_interpolation_is_mmpretrains_randaugment_random_numbers_included():
    kwargs = dict(policies='timm_increasing', num_policies=2, magnitude_level=9,
                  magnitude_std=0.5, hparams=dict(pad_val=128, interpolation='bicubic'))
    ours, theirs = RandomInterpolationRandAugment(**kwargs), RandAugment(**kwargs)
    for seed in range(10):
        img = noise_image(32, 32, seed)
        np.random.seed(seed)
        a = ours(dict(img=img.copy()))['img']
        np.random.seed(seed)
        b = theirs(dict(img=img.copy()))['img']
        np.testing.assert_array_equal(a, b)


def test_a_misspelt_interpolation_is_refused_with_the_valid_values():
    with pytest.raises(ValueError, match=r"interpolation='randm'.*'random'"):
        RandomInterpolationResizedCrop(scale=16, interpolation='randm')
    with pytest.raises(ValueError, match=r"hparams.interpolation='bicubc'.*'bilinear'"):
        RandomInterpolationRandAugment(policies='timm_increasing', num_policies=2,
                                       magnitude_level=9,
                                       hparams=dict(pad_val=128, interpolation='bicubc'))

#!/usr/bin/env python
"""Write a tiny synthetic data set in ADE20K's layout (ADEChallengeData2016), so the real
``ADE20KDataset``, pipeline and ``IoUMetric`` of mmseg run on CPU in seconds:

    <out>/images/training/ADE_train_00000001.jpg   <out>/annotations/training/ADE_train_00000001.png
    <out>/images/validation/ADE_val_00000001.jpg   <out>/annotations/validation/ADE_val_00000001.png

    python tools/dataset_converters/make_tiny_ade20k.py data/tiny_ade20k [--num-train 16]
        [--num-val 8] [--size 96 128] [--seed 0]

Each image is a scene of flat regions: an upper and a lower background band (sky / floor,
split at a random height) and a few rectangles and ellipses of other classes. Every class has
its own colour (with a little pixel noise), and the label PNG holds, pixel for pixel, the
class of the region drawn there, in ADE20K's convention: 0 = "other" (ignored; mmseg's
``ADE20KDataset`` maps it to 255 with ``reduce_zero_label=True``), 1..150 = the classes (so
label ``k`` is class index ``k - 1`` of ``ADE20KDataset.METAINFO['classes']``). Some shapes are
drawn as label 0 (grey "unlabelled" patches). Everything is drawn with PIL from a NumPy
generator seeded by ``(seed, split, index)``: the same arguments give byte-identical files, and
image ``i`` of a split does not depend on how many images are written.
"""
import argparse
import os
import os.path as osp
from typing import Dict, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

# ADE20K label values (1-based, as in the annotation PNGs) used by the generator.
SKY, FLOOR = 3, 4
OBJECT_LABELS = (1, 2, 5, 7, 8, 9, 11, 13)  # wall, building, tree, bed, windowpane, ...
IGNORE = 0
SPLITS = (('training', 'ADE_train'), ('validation', 'ADE_val'))


def class_color(label: int) -> Tuple[int, int, int]:
    """A fixed, distinct RGB colour per label value (grey for 0 / "other")."""
    if label == IGNORE:
        return (128, 128, 128)
    rng = np.random.default_rng(1000 + label)
    return tuple(int(c) for c in rng.integers(20, 236, size=3))


def _shape_box(rng, h: int, w: int):
    bh = int(rng.integers(max(2, h // 6), max(3, h // 2)))
    bw = int(rng.integers(max(2, w // 6), max(3, w // 2)))
    y0 = int(rng.integers(0, h - bh))
    x0 = int(rng.integers(0, w - bw))
    return [x0, y0, x0 + bw - 1, y0 + bh - 1]


def make_scene(rng: np.random.Generator, size: Tuple[int, int],
               noise: float = 6.0) -> Tuple[np.ndarray, np.ndarray]:
    """One ``(image HxWx3 uint8 RGB, label HxW uint8)`` pair."""
    h, w = size
    label = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(label)
    horizon = int(rng.integers(h // 4, 3 * h // 4))
    draw.rectangle([0, 0, w - 1, horizon - 1], fill=SKY)
    draw.rectangle([0, horizon, w - 1, h - 1], fill=FLOOR)
    for _ in range(int(rng.integers(2, 5))):
        value = int(rng.choice(OBJECT_LABELS)) if rng.random() > 0.15 else IGNORE
        box = _shape_box(rng, h, w)
        if rng.random() < 0.5:
            draw.rectangle(box, fill=value)
        else:
            draw.ellipse(box, fill=value)
    label = np.asarray(label, dtype=np.uint8)

    palette = np.zeros((256, 3), dtype=np.float32)
    for value in np.unique(label):
        palette[value] = class_color(int(value))
    image = palette[label] + rng.normal(0.0, noise, size=(h, w, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def make_tiny_ade20k(out_dir: str, num_train: int = 16, num_val: int = 8,
                     size: Union[int, Sequence[int]] = (96, 128), seed: int = 0) -> Dict:
    """Write the data set to ``out_dir``; ``size`` is ``(height, width)`` or one side.

    Returns ``dict(training=num_train, validation=num_val, size=(h, w))``.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(h, w) < 16:
        raise ValueError(f'size={size}: both sides must be at least 16 pixels')
    counts = dict(training=num_train, validation=num_val)
    for split_id, (split, stem) in enumerate(SPLITS):
        img_dir = osp.join(out_dir, 'images', split)
        ann_dir = osp.join(out_dir, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(counts[split]):
            rng = np.random.default_rng([seed, split_id, i])
            image, label = make_scene(rng, (h, w))
            name = f'{stem}_{i + 1:08d}'
            Image.fromarray(image).save(osp.join(img_dir, name + '.jpg'),
                                        quality=95)
            Image.fromarray(label).save(osp.join(ann_dir, name + '.png'))
    return dict(counts, size=(h, w))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', nargs='?', default='data/tiny_ade20k', help='output folder')
    parser.add_argument('--num-train', type=int, default=16)
    parser.add_argument('--num-val', type=int, default=8)
    parser.add_argument('--size', type=int, nargs='+', default=[96, 128],
                        help='image size: HEIGHT WIDTH, or one value for square images')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error('--size takes HEIGHT WIDTH or one value')
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    info = make_tiny_ade20k(args.out, args.num_train, args.num_val, size, args.seed)
    print(f"wrote {info['training']} training and {info['validation']} validation images "
          f"of {info['size'][0]}x{info['size'][1]} in ADE20K's layout to {args.out}")


if __name__ == '__main__':
    main()

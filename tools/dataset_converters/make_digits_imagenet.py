#!/usr/bin/env python
"""Write scikit-learn's handwritten digits (1797 real 8x8 scans, 10 classes; shipped inside
the scikit-learn package, no download) to disk in ImageNet's folder layout, so that the demo
runs mmpretrain's real ImageNet loading path:

    <out>/train/<class>/<class>_<idx>.png     <out>/meta/train.txt   "<class>/<file> <label>"
    <out>/val/<idx>.png                       <out>/meta/val.txt     "<file> <label>"
    <out>/meta/classes.txt                    one class name per line

    python tools/dataset_converters/make_digits_imagenet.py data/digits [--size 32]

The split is stratified and fixed (seed 0): 80% train, 20% val. Images are upscaled to
``--size`` pixels (bicubic) and stored as RGB PNGs.
"""
import argparse
import os
import os.path as osp

import numpy as np
from PIL import Image

CLASSES = [f'digit_{i}' for i in range(10)]


def make_digits_imagenet(out: str, size: int = 32, val_fraction: float = 0.2,
                         seed: int = 0) -> dict:
    from sklearn.datasets import load_digits
    digits = load_digits()
    images, labels = digits.images, digits.target  # float 0..16, int 0..9
    rng = np.random.default_rng(seed)
    val_idx = set()
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        val_idx.update(idx[:int(round(len(idx) * val_fraction))].tolist())

    for sub in ('meta', 'val'):
        os.makedirs(osp.join(out, sub), exist_ok=True)
    train_lines, val_lines = [], []
    for i, (img, label) in enumerate(zip(images, labels)):
        pixels = np.clip(img * (255.0 / 16.0), 0, 255).astype(np.uint8)
        pil = Image.fromarray(pixels, mode='L').resize((size, size), Image.BICUBIC)
        pil = pil.convert('RGB')
        name = CLASSES[label]
        if i in val_idx:
            rel = f'{i:05d}.png'
            pil.save(osp.join(out, 'val', rel))
            val_lines.append(f'{rel} {label}')
        else:
            rel = f'{name}/{name}_{i:05d}.png'
            os.makedirs(osp.join(out, 'train', name), exist_ok=True)
            pil.save(osp.join(out, 'train', rel))
            train_lines.append(f'{rel} {label}')
    for fname, lines in (('train.txt', train_lines), ('val.txt', val_lines),
                         ('classes.txt', CLASSES)):
        with open(osp.join(out, 'meta', fname), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return dict(train=len(train_lines), val=len(val_lines), classes=len(CLASSES))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', nargs='?', default='data/digits', help='output folder')
    parser.add_argument('--size', type=int, default=32, help='image side in pixels')
    args = parser.parse_args()
    counts = make_digits_imagenet(args.out, args.size)
    print(f'wrote {counts["train"]} train and {counts["val"]} val images '
          f'({counts["classes"]} classes) to {args.out}')


if __name__ == '__main__':
    main()

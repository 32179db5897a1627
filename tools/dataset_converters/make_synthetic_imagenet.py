#!/usr/bin/env python
"""Write generated JPEG images in ImageNet's folder layout, at ImageNet's typical size and
file size, to measure the data pipeline (decoding, RandAugment, ...) of a training run
without the real data set:

    <out>/train/<class>/<class>_<idx>.JPEG   <out>/meta/train.txt   "<class>/<file> <label>"
    <out>/val/<idx>.JPEG                      <out>/meta/val.txt     "<file> <label>"
    <out>/meta/classes.txt

    python tools/dataset_converters/make_synthetic_imagenet.py data/synthetic_imagenet \\
        [--train 4096] [--val 256] [--classes 100] [--size 500x375] [--quality 90]
        [--token-labels GRID]

The folder is marked as generated (a ``SYNTHETIC_IMAGENET`` file in it): only a missing or
empty folder, or one so marked, is written into, so a real data set given by mistake is
refused, not overwritten.

``--token-labels GRID`` also writes a token-label score map per training image (the VOLO
configs' ``LoadTokenLabel`` format: float16 ``[2, 5, GRID, GRID]``, random top-5 values and
class indices) under ``<out>/token_labels``.

Each image is a smooth random colour field with pixel noise on top, which JPEG compresses
about as much as a photograph: 500x375 at quality 90 gives files of about 110 kB, like
ImageNet's average. The content carries no label information: for throughput, not accuracy.
"""
import argparse
import os
import os.path as osp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def synthetic_image(seed, width, height):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC),
                       dtype=np.float32)
    field += rng.normal(0, 24, field.shape)
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))


def _write(job):
    path, seed, width, height, quality = job
    synthetic_image(seed, width, height).save(path, quality=quality)
    return osp.getsize(path)


MARKER = 'SYNTHETIC_IMAGENET'  # in every folder this tool writes: it may write there again


def check_writable_folder(out) -> None:
    """Refuse a folder that exists with files in it but without :data:`MARKER`: its
    ``meta/*.txt`` would be overwritten and generated images mixed into its ``train/``."""
    if osp.exists(out) and (not osp.isdir(out) or (
            os.listdir(out) and not osp.isfile(osp.join(out, MARKER)))):
        raise FileExistsError(
            f'{out} is not a folder of generated images (it is a file, or holds files and no '
            f'{MARKER} marker): writing there would overwrite its meta/train.txt, val.txt and '
            'classes.txt and mix generated images into it. Give a new or empty folder.')


def make_synthetic_imagenet(out, num_train=4096, num_val=256, num_classes=100,
                            size=(500, 375), quality=90, seed=0, workers=None):
    """Write the data set; returns counts and the mean file size in bytes."""
    if min(num_train, num_classes) < 1 or num_val < 0:
        raise ValueError('make_synthetic_imagenet: --train and --classes must be >= 1 and '
                         f'--val >= 0 (got {num_train}, {num_classes}, {num_val})')
    check_writable_folder(out)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, MARKER), 'w') as f:
        f.write('written by tools/dataset_converters/make_synthetic_imagenet.py\n')
    width, height = size
    classes = [f'n{i:08d}' for i in range(num_classes)]
    jobs, train_lines, val_lines = [], [], []
    for i in range(num_train):
        name = classes[i % num_classes]
        rel = f'{name}/{name}_{i:06d}.JPEG'
        os.makedirs(osp.join(out, 'train', name), exist_ok=True)
        jobs.append((osp.join(out, 'train', rel), seed * 1_000_003 + i, width, height, quality))
        train_lines.append(f'{rel} {i % num_classes}')
    os.makedirs(osp.join(out, 'val'), exist_ok=True)
    for i in range(num_val):
        rel = f'{i:06d}.JPEG'
        jobs.append((osp.join(out, 'val', rel), seed * 1_000_003 + num_train + i, width,
                     height, quality))
        val_lines.append(f'{rel} {i % num_classes}')
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        sizes = list(pool.map(_write, jobs, chunksize=64))
    os.makedirs(osp.join(out, 'meta'), exist_ok=True)
    for fname, lines in (('train.txt', train_lines), ('val.txt', val_lines),
                         ('classes.txt', classes)):
        with open(osp.join(out, 'meta', fname), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return dict(train=num_train, val=num_val, classes=num_classes,
                mean_bytes=float(np.mean(sizes)))


def make_synthetic_token_labels(out, grid=14, topk=5, num_classes=1000, seed=0):
    """A random score map per training image of ``out`` (``meta/train.txt``), in
    ``<out>/token_labels/<class>/<image>.pt``; returns that folder."""
    import torch
    root = osp.join(out, 'token_labels')
    gen = torch.Generator().manual_seed(seed)
    with open(osp.join(out, 'meta', 'train.txt')) as f:
        files = [line.split()[0] for line in f if line.strip()]
    for rel in files:
        path = osp.join(root, osp.splitext(rel)[0] + '.pt')
        os.makedirs(osp.dirname(path), exist_ok=True)
        values = torch.rand(topk, grid, grid, generator=gen).sort(0, descending=True)[0]
        index = torch.randint(0, num_classes, (topk, grid, grid), generator=gen).float()
        torch.save(torch.stack([values * 10, index]).half(), path)
    return root


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split('x'))
        assert w > 0 and h > 0
    except (ValueError, AssertionError):
        raise argparse.ArgumentTypeError(f'--size {text!r}: give WIDTHxHEIGHT, e.g. 500x375')
    return w, h


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('out', nargs='?', default='data/synthetic_imagenet')
    p.add_argument('--train', type=int, default=4096)
    p.add_argument('--val', type=int, default=256)
    p.add_argument('--classes', type=int, default=100)
    p.add_argument('--size', type=parse_size, default=(500, 375), help='WIDTHxHEIGHT')
    p.add_argument('--quality', type=int, default=90)
    p.add_argument('--workers', type=int, default=None)
    p.add_argument('--token-labels', type=int, default=None, metavar='GRID',
                   help='also write token-label score maps of GRID x GRID (VOLO at 224: 14)')
    a = p.parse_args()
    try:
        check_writable_folder(a.out)
    except FileExistsError as err:
        p.error(str(err))
    r = make_synthetic_imagenet(a.out, a.train, a.val, a.classes, a.size, a.quality,
                                workers=a.workers)
    print(f"wrote {r['train']} train and {r['val']} val JPEG images ({r['classes']} classes, "
          f"{a.size[0]}x{a.size[1]}, mean {r['mean_bytes'] / 1e3:.0f} kB) to {a.out}")
    if a.token_labels:
        root = make_synthetic_token_labels(a.out, grid=a.token_labels)
        print(f'wrote their {a.token_labels}x{a.token_labels} token-label maps to {root}')


if __name__ == '__main__':
    main()

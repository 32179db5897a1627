#!/usr/bin/env python
"""Write a small synthetic COCO-format instance-segmentation dataset (no download), so the
detection configs run mmdet's real ``CocoDataset`` loading, pipeline and ``CocoMetric``:

    <out>/annotations/instances_train2017.json   <out>/train2017/000000000001.jpg ...
    <out>/annotations/instances_val2017.json     <out>/val2017/000000100001.jpg ...

    python tools/dataset_converters/make_tiny_coco.py data/tiny_coco \\
        [--num-train 8] [--num-val 4] [--size 320 240] [--seed 0]

Each image is a textured background (colour gradient, soft blobs, sensor noise) with 1 to 4
non-overlapping filled objects of random size and position, one shape per category, using
real COCO category names and ids so that the 80-class COCO configs run unchanged (the
annotation files list all 80 COCO categories, as COCO's do):
``sports ball`` (disc), ``stop sign`` (octagon), ``kite`` (rhombus), ``tv`` (rectangle with a
frame) and ``frisbee`` (ellipse). Every object has its polygon ``segmentation`` (the very
polygon drawn), its ``bbox`` ([x, y, w, h], the polygon's extent), ``area`` (the polygon's
pixel area from pycocotools) and ``iscrowd=0``. The same seed gives the same files.
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# The 80 COCO categories with their official ids (the annotation files list all of them, as
# COCO's do: mmdet's CocoMetric maps label i to the i-th id of the 80 names).
COCO_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator',
    'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')
COCO_IDS = tuple(i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))

# The categories that appear: (COCO id, COCO name, shape drawn, base RGB colour)
CATEGORIES = [
    (37, 'sports ball', 'disc', (230, 120, 30)),
    (13, 'stop sign', 'octagon', (200, 20, 30)),
    (38, 'kite', 'rhombus', (40, 90, 220)),
    (72, 'tv', 'rectangle', (30, 30, 35)),
    (34, 'frisbee', 'ellipse', (240, 230, 60)),
]


def _polygon(shape: str, cx: float, cy: float, w: float, h: float,
             rng: np.random.Generator) -> List[Tuple[float, float]]:
    """Vertices of ``shape`` centred at (cx, cy) inside a w x h box."""
    if shape in ('disc', 'ellipse'):
        n, rx, ry = 32, w / 2, h / 2
        if shape == 'disc':
            rx = ry = min(w, h) / 2
        return [(cx + rx * math.cos(2 * math.pi * i / n), cy + ry * math.sin(2 * math.pi * i / n))
                for i in range(n)]
    if shape == 'octagon':
        r = min(w, h) / 2
        return [(cx + r * math.cos(math.pi / 8 + math.pi * i / 4),
                 cy + r * math.sin(math.pi / 8 + math.pi * i / 4)) for i in range(8)]
    if shape == 'rhombus':
        return [(cx, cy - h / 2), (cx + w / 2, cy), (cx, cy + h / 2), (cx - w / 2, cy)]
    if shape == 'rectangle':
        tilt = float(rng.uniform(-0.08, 0.08)) * w  # a slight skew, inside the w x h box
        hw = w / 2 - abs(tilt)
        return [(cx - hw + tilt, cy - h / 2), (cx + hw + tilt, cy - h / 2),
                (cx + hw - tilt, cy + h / 2), (cx - hw - tilt, cy + h / 2)]
    raise ValueError(f'unknown shape {shape!r}')


def _background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A smooth two-colour gradient with a few blurred blobs and Gaussian noise."""
    top, bottom = rng.uniform(40, 220, size=(2, 3))
    t = np.linspace(0, 1, height)[:, None, None]
    img = top[None, None] * (1 - t) + bottom[None, None] * t
    img = np.broadcast_to(img, (height, width, 3)).copy()
    yy, xx = np.mgrid[:height, :width]
    for _ in range(rng.integers(2, 5)):
        bx, by = rng.uniform(0, width), rng.uniform(0, height)
        sigma = rng.uniform(0.1, 0.3) * max(width, height)
        weight = np.exp(-((xx - bx)**2 + (yy - by)**2) / (2 * sigma**2))[..., None]
        img += weight * rng.uniform(-60, 60, size=3)
    img += rng.normal(0, 6, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _draw_image(width: int, height: int, rng: np.random.Generator,
                categories: Sequence[tuple]) -> Tuple[Image.Image, List[dict]]:
    img = _background(width, height, rng)
    overlay = Image.new('RGB', (width, height))
    mask = Image.new('L', (width, height), 0)
    draw, draw_mask = ImageDraw.Draw(overlay), ImageDraw.Draw(mask)
    objects, boxes = [], []
    min_side = min(width, height)
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(30):  # rejection sampling: objects do not overlap
            cat = categories[int(rng.integers(len(categories)))]
            w = float(rng.uniform(0.15, 0.5) * min_side)
            h = float(w * rng.uniform(0.6, 1.4))
            if cat[2] in ('disc', 'octagon'):
                h = w
            w, h = min(w, width - 4.0), min(h, height - 4.0)
            x0 = float(rng.uniform(2, width - w - 2))
            y0 = float(rng.uniform(2, height - h - 2))
            box = (x0 - 2, y0 - 2, x0 + w + 2, y0 + h + 2)
            if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]
                   for b in boxes):
                break
        else:
            continue
        boxes.append(box)
        poly = _polygon(cat[2], x0 + w / 2, y0 + h / 2, w, h, rng)
        colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in cat[3])
        draw.polygon(poly, fill=colour)
        draw_mask.polygon(poly, fill=255)
        if cat[2] == 'rectangle':  # a lighter screen inside the tv frame
            inner = _polygon('rectangle', x0 + w / 2, y0 + h / 2, w * 0.8, h * 0.75, rng)
            draw.polygon(inner, fill=tuple(int(v) for v in rng.integers(60, 200, size=3)))
        objects.append(dict(category_id=cat[0], polygon=poly))
    # soft shading on the objects, then composite them onto the background
    overlay = overlay.filter(ImageFilter.GaussianBlur(0.6))
    img.paste(overlay, (0, 0), mask)
    return img, objects


def _annotation(obj: dict, ann_id: int, image_id: int, width: int, height: int) -> dict:
    from pycocotools import mask as mask_utils
    xs = [min(max(x, 0.0), width) for x, _ in obj['polygon']]
    ys = [min(max(y, 0.0), height) for _, y in obj['polygon']]
    flat = [round(v, 2) for xy in zip(xs, ys) for v in xy]
    rle = mask_utils.merge(mask_utils.frPyObjects([flat], height, width))
    x0, y0 = min(xs), min(ys)
    return dict(id=ann_id, image_id=image_id, category_id=obj['category_id'],
                segmentation=[flat], area=float(mask_utils.area(rle)),
                bbox=[round(x0, 2), round(y0, 2), round(max(xs) - x0, 2),
                      round(max(ys) - y0, 2)], iscrowd=0)


def make_tiny_coco(out_dir: str, num_train: int = 8, num_val: int = 4,
                   size: Tuple[int, int] = (320, 240), seed: int = 0,
                   categories: Sequence[tuple] = CATEGORIES) -> Dict[str, str]:
    """Write the dataset to ``out_dir``; ``size`` is (width, height) of every image.

    Returns the paths: ``data_root``, ``train_ann``, ``val_ann`` (relative to data_root),
    ``train_img``, ``val_img`` (image folders relative to data_root, with a trailing /).
    """
    width, height = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    coco_cats = [dict(id=i, name=n, supercategory='coco') for i, n in zip(COCO_IDS, COCO_NAMES)]
    known = {(c['id'], c['name']) for c in coco_cats}
    for cat in categories:
        if (cat[0], cat[1]) not in known:  # a custom category: listed after COCO's
            coco_cats.append(dict(id=cat[0], name=cat[1], supercategory='shape'))
            known.add((cat[0], cat[1]))
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    ann_id = 1
    for split, num, first_id in (('train2017', num_train, 1), ('val2017', num_val, 100001)):
        os.makedirs(osp.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for i in range(num):
            image_id = first_id + i
            file_name = f'{image_id:012d}.jpg'
            img, objects = _draw_image(width, height, rng, categories)
            img.save(osp.join(out_dir, split, file_name), quality=92)
            images.append(dict(id=image_id, file_name=file_name, width=width, height=height))
            for obj in objects:
                annotations.append(_annotation(obj, ann_id, image_id, width, height))
                ann_id += 1
        info = dict(description=f'tiny synthetic COCO ({split}), make_tiny_coco.py',
                    version='1.0', year=2017)
        with open(osp.join(out_dir, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(info=info, licenses=[], images=images, annotations=annotations,
                           categories=coco_cats), f)
    return dict(data_root=out_dir, train_ann='annotations/instances_train2017.json',
                val_ann='annotations/instances_val2017.json', train_img='train2017/',
                val_img='val2017/')


def main(argv=None):
    parser = argparse.ArgumentParser(description='Write a tiny synthetic COCO dataset')
    parser.add_argument('out_dir', help='output folder (becomes data_root)')
    parser.add_argument('--num-train', type=int, default=8)
    parser.add_argument('--num-val', type=int, default=4)
    parser.add_argument('--size', type=int, nargs=2, default=(320, 240),
                        metavar=('WIDTH', 'HEIGHT'))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    paths = make_tiny_coco(args.out_dir, args.num_train, args.num_val, tuple(args.size),
                           args.seed)
    print(f"Wrote {args.num_train} train and {args.num_val} val images to {args.out_dir}. "
          f"Train a detection config on it with --cfg-options "
          f"train_dataloader.dataset.data_root={args.out_dir} "
          f"val_dataloader.dataset.data_root={args.out_dir} "
          f"test_dataloader.dataset.data_root={args.out_dir} "
          f"val_evaluator.ann_file={osp.join(args.out_dir, paths['val_ann'])} "
          f"test_evaluator.ann_file={osp.join(args.out_dir, paths['val_ann'])}")


if __name__ == '__main__':
    main()

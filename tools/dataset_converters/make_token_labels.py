#!/usr/bin/env python
"""Write token-labeling score maps for a dataset with any mmpretrain classifier as teacher.

    python tools/dataset_converters/make_token_labels.py TEACHER_CONFIG TEACHER_CKPT OUT_DIR \
        [--data-config CONFIG] [--split train] [--img-size 224] [--topk 5] [--batch-size 64]
        [--device cpu] [--cfg-options ...]

    # e.g. the embedded demo data with a classifier trained by configs/demo/hat_vit_digits.py
    python tools/dataset_converters/make_token_labels.py configs/demo/hat_vit_digits.py \
        work_dirs/hat_vit_digits/epoch_30.pth data/digits/token_labels

One file per training image, ``OUT_DIR/<class dir>/<image stem>.pt``: a float16 tensor
``[2, k, H, W]`` with the teacher's top-k dense logits and their class indices -- the format
of the ``tlt`` package that the VOLO/HAT code reads, and what
``hat_mm.datasets.LoadTokenLabel`` loads. As ``tlt``'s ``generate_label.py``, the dense
logits are the classifier applied to every location of the last feature map
(:func:`dense_logits`: VOLO's token head, ViT patch tokens through
the ViT head, CNN feature maps through a linear head, timm models). Unlike
``generate_label.py`` (which feeds the evaluation centre crop), the whole image is resized
to ``--img-size`` squared, so that the map covers exactly the image the training crop boxes
refer to.

The images are the ``--split`` dataset of ``--data-config`` (default: the teacher config's
``train_dataloader.dataset``; ``--cfg-options`` edits the teacher config, e.g.
``train_dataloader.dataset.data_root=...``), decoded by that dataset's ``LoadImageFromFile``
step (the paper configs: PIL's decode without EXIF rotation, as training); the image
normalisation is the teacher model's data preprocessor.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)


def _guess_img_size(model) -> Optional[int]:
    for owner in (getattr(model, 'backbone', None), getattr(model, 'model', None)):
        size = getattr(owner, 'img_size', None)
        if size is None and owner is not None and hasattr(owner, 'pretrained_cfg'):
            size = (owner.pretrained_cfg or {}).get('input_size', (None, ) * 3)[-1]
        if size is not None:
            return int(size[0] if isinstance(size, (tuple, list)) else size)
    return None


@torch.no_grad()
def dense_logits(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Per-location class logits ``[B, C, h, w]`` of a classifier (the teacher of
    ``tools/dataset_converters/make_token_labels.py``), as ``tlt``'s ``generate_label.py``
    does: the classifier applied to every location of the last feature map.

    Supported: the VOLO classifiers (their token head ``aux_head`` on the patch tokens),
    mmpretrain ``ImageClassifier`` with a ViT-family backbone (``out_type``
    switched to ``'featmap'``) or a CNN backbone (+ global pooling neck) and a linear head
    (``LinearClsHead``, ``VisionTransformerClsHead``, ``DeiTClsHead``: mean of both heads),
    and ``TimmClassifier`` (``forward_features`` + ``get_classifier()``).
    """
    from mmpretrain.models import ImageClassifier, TimmClassifier

    from hat_mm.models import VOLOClassifier
    if isinstance(model, VOLOClassifier):  # the token head on the patch tokens
        aux = model.model.aux_head(model.model.forward_features(inputs)[:, 1:])
        B, N, C = aux.shape
        h = int(round((N * inputs.shape[-2] / inputs.shape[-1]) ** 0.5))
        return aux.reshape(B, h, N // h, C).permute(0, 3, 1, 2)
    if isinstance(model, ImageClassifier):
        backbone, head = model.backbone, model.head
        if hasattr(backbone, 'out_type'):
            old = backbone.out_type
            backbone.out_type = 'featmap'
            try:
                feat = backbone(inputs)[-1]
            finally:
                backbone.out_type = old
        else:
            feat = backbone(inputs)[-1]
        if isinstance(feat, (tuple, list)):
            feat = feat[-1]
        if feat.dim() != 4:
            raise NotImplementedError(f'{type(backbone).__name__} gives no feature map')
        x = feat.permute(0, 2, 3, 1)  # B, h, w, C
        layers = getattr(head, 'layers', None)
        if layers is not None and hasattr(layers, 'head'):
            if hasattr(layers, 'pre_logits'):
                x = layers.act(layers.pre_logits(x))
            out = layers.head(x)
            if hasattr(layers, 'head_dist'):
                out = (out + layers.head_dist(x)) / 2
        elif isinstance(getattr(head, 'fc', None), torch.nn.Linear):
            out = head.fc(x)
        else:
            raise NotImplementedError(f'dense logits of head {type(head).__name__} are not '
                                      'supported (linear heads only)')
        return out.permute(0, 3, 1, 2)
    if isinstance(model, TimmClassifier):
        m = model.model
        feat = m.forward_features(inputs)
        fc = getattr(m, 'aux_head', None)
        if fc is None:
            fc = m.get_classifier()
        if feat.dim() == 3:
            B, N, C = feat.shape
            side = int(np.floor(np.sqrt(N)))
            feat = feat[:, N - side * side:].reshape(B, side, side, C)
        elif feat.dim() == 4 and feat.shape[1] == getattr(m, 'num_features', -1):
            feat = feat.permute(0, 2, 3, 1)
        if isinstance(fc, torch.nn.Conv2d):
            return fc(feat.permute(0, 3, 1, 2))
        return fc(feat).permute(0, 3, 1, 2)
    raise NotImplementedError(f'dense logits of {type(model).__name__} are not supported')


def make_token_labels(teacher_config: str, checkpoint: str, out_dir: str,
                      data_config: Optional[str] = None, split: str = 'train',
                      img_size: Optional[int] = None, topk: int = 5, batch_size: int = 64,
                      device: str = 'cpu', img_root: Optional[str] = None,
                      cfg_options: Optional[dict] = None) -> dict:
    """Write the score maps; returns ``dict(files=..., grid=(H, W), topk=k, classes=C)``."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope, init_default_scope
    from mmpretrain.registry import DATASETS, MODELS

    import hat_mm  # noqa: F401
    from hat_mm.datasets import token_label_path
    from hat_mm.utils import load_weights_strict

    cfg = Config.fromfile(teacher_config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    data_cfg = Config.fromfile(data_config) if data_config else cfg
    if DefaultScope.get_current_instance() is None:
        init_default_scope('mmpretrain')
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner does
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_weights_strict(model, checkpoint)
    model.to(device).eval()
    img_size = img_size or _guess_img_size(model)
    if img_size is None:
        raise SystemExit('give --img-size: the teacher input size is not visible in its model')

    loader_cfg = data_cfg.get(f'{split}_dataloader') or data_cfg.train_dataloader
    ds_cfg = loader_cfg.dataset.copy()
    # the data config's own image decoding (the paper configs: PIL's, without EXIF rotation),
    # so that each map covers the image exactly as training loads it
    load = next((step for step in ds_cfg.get('pipeline', [])
                 if step.get('type') == 'LoadImageFromFile'), dict(type='LoadImageFromFile'))
    ds_cfg.pipeline = [
        load,
        dict(type='Resize', scale=(img_size, img_size), backend='pillow',
             interpolation='bicubic'),
        dict(type='PackInputs'),
    ]
    dataset = DATASETS.build(ds_cfg)
    written = {}
    grid = classes = None
    for start in range(0, len(dataset), batch_size):
        batch = pseudo_collate([dataset[i] for i in range(start, min(start + batch_size,
                                                                     len(dataset)))])
        with torch.no_grad():
            data = model.data_preprocessor(batch, False)
            dense = dense_logits(model, data['inputs'].to(device)).float().cpu()
        classes, grid = dense.shape[1], tuple(dense.shape[-2:])
        values, indices = dense.topk(min(topk, classes), dim=1)
        for i, sample in enumerate(data['data_samples']):
            path = token_label_path(out_dir, sample.img_path, img_root)
            if path in written:
                raise SystemExit(f'{sample.img_path} and {written[path]} map to the same '
                                 f'score-map file {path}: give --img-root')
            written[path] = sample.img_path
            os.makedirs(osp.dirname(path), exist_ok=True)
            torch.save(torch.stack([values[i], indices[i].float()]).half(), path)
    return dict(files=len(written), grid=grid, topk=min(topk, classes or topk),
                classes=classes)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Write token-labeling score maps (tlt '
                                     'format) with an mmpretrain classifier as teacher.')
    parser.add_argument('config', help='teacher config (its model; and the dataset, unless '
                        '--data-config)')
    parser.add_argument('checkpoint', help='teacher checkpoint (mmengine state dict)')
    parser.add_argument('out_dir', help='folder of the score maps (token_label_root)')
    parser.add_argument('--data-config', help='config whose <split>_dataloader.dataset '
                        'lists the images (default: the teacher config)')
    parser.add_argument('--split', default='train', help='train / val / test (default train)')
    parser.add_argument('--img-size', type=int, help='teacher input size (default: the '
                        "model's img_size)")
    parser.add_argument('--topk', type=int, default=5, help='classes kept per location (5)')
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--img-root', help='write paths relative to this image folder '
                        '(default: <class dir>/<file>, the ImageNet train layout)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override entries of the teacher config')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    info = make_token_labels(args.config, args.checkpoint, args.out_dir,
                             data_config=args.data_config, split=args.split,
                             img_size=args.img_size, topk=args.topk,
                             batch_size=args.batch_size, device=args.device,
                             img_root=args.img_root, cfg_options=args.cfg_options)
    print(f'wrote {info["files"]} score maps ({info["topk"]} of {info["classes"]} classes on a '
          f'{info["grid"][0]}x{info["grid"][1]} grid) to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

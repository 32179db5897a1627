#!/usr/bin/env python
"""Convert the HAT releases of VOLO and DeiT-B distilled to checkpoints for our configs.

    python tools/model_converters/timm_volo_deit_to_mmpretrain.py \
        hat_volo_d1_224.pth.tar hat_volo_d1_224_mmpretrain.pth [--arch volo-d1-224] [--ema]
    python tools/model_converters/timm_volo_deit_to_mmpretrain.py \
        hat_deit_base_distilled_patch16_224.pth.tar hat_deit_b_distilled_mmpretrain.pth

The releases are timm training checkpoints (``state_dict``, ``epoch``, ``arch``, ``args`` as an
``argparse.Namespace``, maybe ``state_dict_ema``). Their pickled ``args`` keep torch >= 2.6
from loading them weights-only, so mmengine's ``load_from`` / ``tools/test.py`` cannot read
them directly; this tool loads them with exactly that class allowed and writes an mmengine
checkpoint ``{'state_dict': ..., 'meta': ...}``:

- VOLO (``hat_volo_d{1,5}_{224,384,448,512}.pth.tar``): the keys of the official VOLO code
  (HAT's ``models/volo.py``) are timm's, and the VOLO classifiers of
  ``hat_mm/models/volo.py`` keep timm's keys, so the weights are copied as they are;
- DeiT-B distilled (``hat_deit_base_distilled_patch16_224.pth.tar``): timm's
  ``VisionTransformerDistilled`` keys -> mmpretrain's ``DistilledVisionTransformer`` +
  ``DeiTClsHead`` (the ViT part with ``convert_vit`` of ``timm_to_mmpretrain.py``,
  ``dist_token`` -> ``backbone.dist_token``, ``head_dist`` -> ``head.layers.head_dist``).

The architecture (and, for VOLO, the resolution: the position table is a grid of
``img_size / 16``) is detected from the weights; ``--arch`` refuses any other. The result is
checked key by key and shape by shape against the model of the arch's config before anything
is written. Teachers are not part of the releases nor of the converted checkpoints.
"""
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

from tools.model_converters.common import (  # noqa: E402
    CheckpointError, build_config_model, check_output_path, first_keys, load_release,
    release_meta, run_cli, save_converted, timm_name_hint, verify_against_target)
from tools.model_converters.timm_to_mmpretrain import (  # noqa: E402
    convert_vit, describe_state_dict)

_D1 = dict(family='volo', embed_dims=192, stem_dims=64, layers=(4, 4, 8, 2))
_D5 = dict(family='volo', embed_dims=384, stem_dims=128, layers=(12, 12, 20, 4))
ARCHS = OrderedDict([
    ('volo-d1-224', dict(_D1, grid=14, config='configs/hat_volo_d1_224.py',
                         timm_names=('volo_d1_224', ))),
    ('volo-d1-384', dict(_D1, grid=24, config='configs/hat_volo_d1_384.py',
                         timm_names=('volo_d1_384', ))),
    ('volo-d5-224', dict(_D5, grid=14, config='configs/hat_volo_d5_224.py',
                         timm_names=('volo_d5_224', ))),
    ('volo-d5-448', dict(_D5, grid=28, config='configs/hat_volo_d5_448.py',
                         timm_names=('volo_d5_448', ))),
    ('volo-d5-512', dict(_D5, grid=32, config='configs/hat_volo_d5_512.py',
                         timm_names=('volo_d5_512', ))),
    ('deit-b-distilled', dict(family='deit-distilled', embed_dims=768, depth=12,
                              mlp_dims=3072, patch_size=16, num_tokens=198,
                              config='configs/hat_deit_b_distilled.py',
                              timm_names=('deit_base_distilled_patch16_224', ))),
])
TIMM_NAME_TO_ARCH = {n: a for a, spec in ARCHS.items() for n in spec['timm_names']}
# the official code names VOLO by depth only (volo_d1, volo_d5) and sets --img-size apart
TIMM_NAME_TO_ARCH.update({'volo_d1': 'volo-d1-*', 'volo_d5': 'volo-d5-*'})


def describe(state_dict: Dict[str, torch.Tensor]) -> dict:
    """What the weights show: VOLO (sizes, grid), distilled DeiT, or something else."""
    sd = state_dict
    if 'aux_head.weight' in sd and any(k.startswith('network.') for k in sd):
        depth = {}
        for k in sd:
            m = re.match(r'network\.(\d+)\.(\d+)\.', k)
            if m:
                i, j = int(m.group(1)), int(m.group(2))
                depth[i] = max(depth.get(i, 0), j + 1)
        proj = sd.get('patch_embed.proj.weight')
        stem = sd.get('patch_embed.conv.0.weight')
        pos = sd.get('pos_embed')
        return dict(family='volo', embed_dims=int(proj.shape[0]) if proj is not None else None,
                    stem_dims=int(stem.shape[0]) if stem is not None else None,
                    layers=tuple(depth[i] for i in sorted(depth)),
                    grid=int(pos.shape[1]) if pos is not None and pos.dim() == 4 else None,
                    num_classes=int(sd['aux_head.weight'].shape[0]))
    found = describe_state_dict(sd)
    if found.get('family') == 'vit' and found.get('distilled'):
        return dict(found, family='deit-distilled')
    return dict(family=found.get('family'))


def _spec_text(spec: dict) -> str:
    if spec.get('family') == 'volo':
        return (f"VOLO, embed dim {spec.get('embed_dims')}, stem {spec.get('stem_dims')}, "
                f"layers {'-'.join(map(str, spec.get('layers') or ()))}, position grid "
                f"{spec.get('grid')} (img {spec['grid'] * 16 if spec.get('grid') else '?'})")
    if spec.get('family') == 'deit-distilled':
        return (f"distilled DeiT, embed dim {spec.get('embed_dims')}, depth {spec.get('depth')}"
                f", mlp {spec.get('mlp_dims')}, {spec.get('num_tokens')} tokens")
    return f"no VOLO or distilled-DeiT layout (family {spec.get('family')})"


def detect_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    found = describe(state_dict)
    keys = {'volo': ('embed_dims', 'stem_dims', 'layers', 'grid'),
            'deit-distilled': ('embed_dims', 'depth', 'mlp_dims', 'patch_size', 'num_tokens')}
    for arch, spec in ARCHS.items():
        if found.get('family') == spec['family'] and all(
                found.get(k) == spec[k] for k in keys[spec['family']]):
            return arch
    return None


def convert_deit_distilled(state_dict: Dict[str, torch.Tensor]
                           ) -> 'OrderedDict[str, torch.Tensor]':
    """timm ``VisionTransformerDistilled`` -> mmpretrain distilled DeiT keys."""
    rest = OrderedDict((k, v) for k, v in state_dict.items()
                       if k not in ('dist_token', 'head_dist.weight', 'head_dist.bias'))
    out = convert_vit(rest)
    out['backbone.dist_token'] = state_dict['dist_token']
    for p in ('weight', 'bias'):
        out[f'head.layers.head_dist.{p}'] = state_dict[f'head_dist.{p}']
    return out


def convert_state_dict(state_dict: Dict[str, torch.Tensor], arch: Optional[str] = None,
                       src: str = 'the checkpoint', hint: Optional[str] = None
                       ) -> Tuple[str, 'OrderedDict[str, torch.Tensor]']:
    if arch is not None and arch not in ARCHS:
        raise CheckpointError(f'unknown --arch {arch!r}; choose one of {", ".join(ARCHS)}.')
    found = describe(state_dict)
    detected = detect_arch(state_dict)
    if detected is None or (arch is not None and detected != arch):
        expected = f'; expected {arch} ({_spec_text(ARCHS[arch])})' if arch else ''
        fix = (f'it is a {detected} checkpoint: convert it with --arch {detected}'
               if detected else 'convert a HAT release of VOLO-D1/D5 or DeiT-B distilled '
               '(timm classifier checkpoint); the Swin and ViT releases convert with '
               'tools/model_converters/timm_to_mmpretrain.py')
        raise CheckpointError(
            f'{src}: found {_spec_text(found)}{expected} (first keys: '
            f'{first_keys(state_dict)}). Fix: {fix}. Nothing was written.')
    hinted = TIMM_NAME_TO_ARCH.get(hint or '')
    if hinted and not re.fullmatch(hinted.replace('*', '.*'), detected):
        print(f'warning: {src} is named/recorded as {hint} but its weights are {detected}; '
              f'converting as {detected}.', file=sys.stderr)
    if ARCHS[detected]['family'] == 'volo':
        return detected, OrderedDict(state_dict)
    return detected, convert_deit_distilled(state_dict)


def target_state_dict(arch: str) -> 'OrderedDict[str, torch.Tensor]':
    """Keys, shapes and dtypes of the model that ``ARCHS[arch]['config']`` builds (built on
    the meta device: no memory, no initialisation cost)."""
    return build_config_model(ARCHS[arch]['config'], meta=True).state_dict()


def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None,
                       ema: bool = False) -> dict:
    """Convert the release ``src`` to the mmengine checkpoint ``dst``; returns its meta."""
    check_output_path(src, dst)
    state, info = load_release(src, ema=ema)
    hint = timm_name_hint(src, info)
    arch, converted = convert_state_dict(state, arch=arch, src=src, hint=hint)
    target = target_state_dict(arch)
    for k in target:  # BatchNorm counters (VOLO's stem) are not always saved
        if k.endswith('num_batches_tracked') and k not in converted:
            converted[k] = torch.zeros((), dtype=torch.long)
    verify_against_target(converted, target, arch, ARCHS[arch]['config'], src)
    out_state = OrderedDict((k, converted[k].to(target[k].dtype).contiguous()) for k in target)

    meta = release_meta(src, info, arch, ARCHS[arch]['config'], hint, ema,
                        'tools/model_converters/timm_volo_deit_to_mmpretrain.py')
    save_converted(dst, out_state, meta)
    return meta


def main(argv=None) -> int:
    return run_cli(argv, 'Convert a HAT release of VOLO or DeiT-B distilled (timm checkpoint) '
                   'to an mmpretrain checkpoint for configs/hat_volo_*.py / '
                   'configs/hat_deit_b_distilled.py.', ARCHS, convert_checkpoint)


if __name__ == '__main__':
    sys.exit(main())

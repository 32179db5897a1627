#!/usr/bin/env python
"""Convert the HAT release checkpoints (timm 0.4.x) to mmpretrain checkpoints for our configs.

    python tools/model_converters/timm_to_mmpretrain.py \
        hat_swin_tiny_patch4_window7_224.pth.tar hat_swin_t_mmpretrain.pth [--arch swin-t] [--ema]

The release files ``hat_<timm model name>.pth.tar`` are timm training checkpoints: a dict with
``state_dict`` (and ``epoch``, ``arch``, ``args`` (an ``argparse.Namespace``), ``version``,
possibly ``state_dict_ema``, ``optimizer``, ...). Their keys are in timm 0.4.x layout, which for
Swin is the official Swin layout (patch merging stored as ``layers.{i}.downsample`` at the end
of stage ``i``). The result is an mmengine checkpoint ``{'state_dict': ..., 'meta': ...}``
whose keys are those of the classifier built by ``configs/hat_{swin,vit}_{t,s,b}.py``
(mmpretrain ``SwinTransformer`` + ``LinearClsHead``, or ``VisionTransformer`` (deit-*) +
``VisionTransformerClsHead``); ``hat_mm.utils.load_weights_strict`` and ``tools/test.py``
load it as is.

The architecture is detected from the weights (embedding width, depths, heads of the Swin
relative position tables); ``--arch`` makes the conversion refuse any other architecture. The
converted dict is checked against the state dict of the model that the config builds (every
key present, none extra, equal shapes) before anything is written. ViT heads are not visible
in the weights (fused qkv), so a ViT is identified by its width and depth.

Patch merging: the official Swin concatenates the 2x2 neighbours as
``[x(0,0), x(1,0), x(0,1), x(1,1)]`` (row, column offsets) channel-block by channel-block,
i.e. input feature ``(kh + 2 * kw) * C + c``; mmpretrain's ``PatchMerging`` uses
``nn.Unfold``, whose feature ``c * 4 + kh * 2 + kw`` is channel-major. The reduction weight
columns and the (pre-)norm weight and bias are permuted from the first order to the second.
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

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # noqa: E402

from tools.model_converters.common import (  # noqa: E402
    CheckpointError, build_config_model, check_output_path, first_keys, format_names,
    load_release, release_meta, run_cli, save_converted, timm_name_hint,
    verify_against_target)

# Supported architectures: what the weights of the release must show, the config that builds
# the target model, and the timm model names of the release files.
ARCHS = OrderedDict([
    ('swin-t', dict(family='swin', config='configs/hat_swin_t.py', embed_dims=96,
                    depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), patch_size=4, window=7,
                    timm_names=('swin_tiny_patch4_window7_224', ))),
    ('swin-s', dict(family='swin', config='configs/hat_swin_s.py', embed_dims=96,
                    depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), patch_size=4, window=7,
                    timm_names=('swin_small_patch4_window7_224', ))),
    ('swin-b', dict(family='swin', config='configs/hat_swin_b.py', embed_dims=128,
                    depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), patch_size=4, window=7,
                    timm_names=('swin_base_patch4_window7_224', ))),
    ('vit-t', dict(family='vit', config='configs/hat_vit_t.py', embed_dims=192, depth=12,
                   mlp_dims=768, patch_size=16, num_tokens=197,
                   timm_names=('vit_tiny_patch16_224', 'deit_tiny_patch16_224'))),
    ('vit-s', dict(family='vit', config='configs/hat_vit_s.py', embed_dims=384, depth=12,
                   mlp_dims=1536, patch_size=16, num_tokens=197,
                   timm_names=('vit_small_patch16_224', 'deit_small_patch16_224'))),
    ('vit-b', dict(family='vit', config='configs/hat_vit_b.py', embed_dims=768, depth=12,
                   mlp_dims=3072, patch_size=16, num_tokens=197,
                   timm_names=('vit_base_patch16_224', 'deit_base_patch16_224'))),
])
TIMM_NAME_TO_ARCH = {n: a for a, spec in ARCHS.items() for n in spec['timm_names']}


# ----------------------------------------------------------------------------- description
def _count_indices(state_dict: Dict, pattern: str) -> Dict[Tuple[int, ...], None]:
    found = {}
    for k in state_dict:
        m = re.match(pattern, k)
        if m:
            found[tuple(int(g) for g in m.groups())] = None
    return found


def describe_state_dict(state_dict: Dict[str, torch.Tensor]) -> dict:
    """What the weights show: the family (swin / vit / None) and its sizes."""
    sd = state_dict
    if any(k.startswith('layers.') and '.blocks.' in k for k in sd):
        blocks = _count_indices(sd, r'layers\.(\d+)\.blocks\.(\d+)\.')
        n_stages = max(s for s, _ in blocks) + 1
        depths = tuple(max([b for s, b in blocks if s == i] or [-1]) + 1
                       for i in range(n_stages))
        heads = []
        window = None
        for i in range(n_stages):
            t = sd.get(f'layers.{i}.blocks.0.attn.relative_position_bias_table')
            heads.append(int(t.shape[1]) if t is not None and t.dim() == 2 else None)
            if t is not None and window is None and t.dim() == 2:
                window = int(round((t.shape[0] ** 0.5 + 1) / 2))
        proj = sd.get('patch_embed.proj.weight')
        # timm >= 0.9 stores the patch merging at the start of the next stage
        layout = 'timm>=0.9' if ('layers.1.downsample.reduction.weight' in sd
                                 and 'layers.0.downsample.reduction.weight' not in sd) \
            else 'official'
        return dict(family='swin', layout=layout,
                    embed_dims=int(proj.shape[0]) if proj is not None else None,
                    patch_size=int(proj.shape[-1]) if proj is not None else None,
                    depths=depths, num_heads=tuple(heads), window=window)
    if any(k.startswith('blocks.') for k in sd) and ('cls_token' in sd or 'pos_embed' in sd):
        blocks = _count_indices(sd, r'blocks\.(\d+)\.')
        ref = sd.get('cls_token', sd.get('pos_embed'))
        proj = sd.get('patch_embed.proj.weight')
        fc1 = sd.get('blocks.0.mlp.fc1.weight')
        pos = sd.get('pos_embed')
        return dict(family='vit', embed_dims=int(ref.shape[-1]),
                    depth=max(b for b, in blocks) + 1,
                    mlp_dims=int(fc1.shape[0]) if fc1 is not None else None,
                    patch_size=int(proj.shape[-1]) if proj is not None else None,
                    num_tokens=int(pos.shape[1]) if pos is not None else None,
                    distilled='dist_token' in sd)
    return dict(family=None)


def _spec_text(spec: dict) -> str:
    if spec.get('family') == 'swin':
        return (f"Swin, embed dim {spec['embed_dims']}, depths "
                f"{'-'.join(map(str, spec['depths']))}, heads "
                f"{'-'.join(str(h) for h in spec['num_heads'])}, patch {spec['patch_size']}, "
                f"window {spec['window']}")
    if spec.get('family') == 'vit':
        text = (f"ViT, embed dim {spec['embed_dims']}, depth {spec['depth']}, mlp "
                f"{spec['mlp_dims']}, patch {spec['patch_size']}, {spec['num_tokens']} tokens")
        return text + (', distilled (dist_token)' if spec.get('distilled') else '')
    return 'no ViT or Swin layout'


def _matches(found: dict, spec: dict) -> bool:
    if found.get('family') != spec['family']:
        return False
    keys = (('embed_dims', 'depths', 'num_heads', 'patch_size', 'window')
            if spec['family'] == 'swin' else
            ('embed_dims', 'depth', 'mlp_dims', 'patch_size', 'num_tokens'))
    if spec['family'] == 'vit' and found.get('distilled'):
        return False
    return all(found.get(k) == spec[k] for k in keys)


def detect_arch(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """The supported arch whose sizes the weights show, or None."""
    found = describe_state_dict(state_dict)
    for arch, spec in ARCHS.items():
        if _matches(found, spec):
            return arch
    return None


# ----------------------------------------------------------------------------- key mapping
def merging_permutation(in_channels: int) -> torch.Tensor:
    """Index ``p`` with ``unfold_feature[u] = official_feature[p[u]]`` for 2x2 patch merging.

    Unfold (mmpretrain): ``u = c * 4 + kh * 2 + kw``; official Swin / timm concatenation
    ``[x(0,0), x(1,0), x(0,1), x(1,1)]`` (row offset kh, column offset kw):
    ``o = (kh + 2 * kw) * C + c``.
    """
    u = torch.arange(4 * in_channels)
    c, kh, kw = u // 4, (u % 4) // 2, u % 2
    return (kh + 2 * kw) * in_channels + c


def swin_timm_to_official(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """timm >= 0.9 Swin layout (merging at the start of stage i + 1, ``head.fc``) -> official."""
    out = OrderedDict()
    for k, v in state_dict.items():
        m = re.match(r'layers\.(\d+)\.downsample\.(.*)', k)
        if m:
            k = f'layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}'
        elif k.startswith('head.fc.'):
            k = 'head.' + k[len('head.fc.'):]
        out[k] = v
    return out


_SWIN_BLOCK = {
    'norm1': 'norm1', 'norm2': 'norm2',
    'attn.qkv': 'attn.w_msa.qkv', 'attn.proj': 'attn.w_msa.proj',
    'mlp.fc1': 'ffn.layers.0.0', 'mlp.fc2': 'ffn.layers.1',
}


def _map_keys(state_dict: Dict[str, torch.Tensor], rename, family: str, supported: str
              ) -> 'OrderedDict[str, torch.Tensor]':
    """``rename(key, value) -> (new key, new value)`` for every entry; a new key of ``''``
    drops the entry, ``None`` marks it unknown: unknown keys raise CheckpointError by name."""
    out, unknown = OrderedDict(), []
    for k, v in state_dict.items():
        new, v = rename(k, v)
        if new is None:
            unknown.append(k)
        elif new:
            out[new] = v
    if unknown:
        raise CheckpointError(f'the {family} checkpoint has keys this converter does not '
                              f'know: {format_names(unknown, 8)}. {supported}')
    return out


def _swin_key(k: str, v: torch.Tensor):
    for old, new in (('patch_embed.proj.', 'backbone.patch_embed.projection.'),
                     ('patch_embed.norm.', 'backbone.patch_embed.norm.'),
                     ('norm.', 'backbone.norm3.'), ('head.', 'head.fc.')):
        if k.startswith(old):
            return new + k[len(old):], v
    if re.match(r'layers\.\d+\.blocks\.\d+\.attn_mask$', k):
        return '', v  # mmpretrain computes the mask in forward
    m = re.match(r'layers\.(\d+)\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)$', k)
    if m:
        permuted = v[..., merging_permutation(v.shape[-1] // 4)].contiguous()
        return f'backbone.stages.{m.group(1)}.downsample.{m.group(2)}', permuted
    m = re.match(r'layers\.(\d+)\.blocks\.(\d+)\.(.+)$', k)
    if m is None:
        return None, v
    stage, block, rest = m.groups()
    prefix = f'backbone.stages.{stage}.blocks.{block}.'
    if rest in ('attn.relative_position_bias_table', 'attn.relative_position_index'):
        return prefix + 'attn.w_msa.' + rest[len('attn.'):], v
    name, _, param = rest.rpartition('.')
    if name in _SWIN_BLOCK and param in ('weight', 'bias'):
        return prefix + _SWIN_BLOCK[name] + '.' + param, v
    return None, v


def convert_swin(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Official (timm 0.4.x) Swin keys -> mmpretrain ``ImageClassifier`` keys.

    ``attn_mask`` buffers are dropped (mmpretrain computes the mask in forward);
    ``relative_position_index`` buffers are kept (renamed). Unknown keys raise CheckpointError.
    """
    if describe_state_dict(state_dict).get('layout') == 'timm>=0.9':
        state_dict = swin_timm_to_official(state_dict)
    return _map_keys(state_dict, _swin_key, 'Swin',
                     'Only the official Swin-T/S/B classifiers (timm 0.4.x layout, no absolute '
                     'position embedding) are supported.')


_VIT_BLOCK = {
    'norm1': 'ln1', 'norm2': 'ln2', 'attn.qkv': 'attn.qkv', 'attn.proj': 'attn.proj',
    'mlp.fc1': 'ffn.layers.0.0', 'mlp.fc2': 'ffn.layers.1',
}


def _vit_key(k: str, v: torch.Tensor):
    if k in ('cls_token', 'pos_embed'):
        return 'backbone.' + k, v
    if k.startswith('patch_embed.proj.'):
        return 'backbone.patch_embed.projection.' + k[len('patch_embed.proj.'):], v
    module, _, param = k.partition('.')
    if module in ('norm', 'head') and param in ('weight', 'bias'):
        return {'norm': 'backbone.ln1.', 'head': 'head.layers.head.'}[module] + param, v
    m = re.match(r'blocks\.(\d+)\.(.+)\.(weight|bias)$', k)
    if m and m.group(2) in _VIT_BLOCK:
        return f'backbone.layers.{m.group(1)}.{_VIT_BLOCK[m.group(2)]}.{m.group(3)}', v
    return None, v


def convert_vit(state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """timm (DeiT / ViT) keys -> mmpretrain ``VisionTransformer`` + ``VisionTransformerClsHead``.

    Unknown keys (``dist_token``, ``head_dist``, ``pre_logits`` ...) raise CheckpointError.
    """
    return _map_keys(state_dict, _vit_key, 'ViT',
                     'Only plain DeiT/ViT-T/S/B classifiers are supported (no distillation '
                     'token, no pre-logits layer).')


# ----------------------------------------------------------------------------- target model
def build_target_model(arch: str):
    """The classifier that ``configs/hat_<arch>.py`` builds (PyTorch default init)."""
    return build_config_model(ARCHS[arch]['config'])


def _refuse(src: str, requested: str, found: dict, detected: Optional[str]) -> CheckpointError:
    expected = _spec_text(ARCHS[requested])
    if detected:
        fix = (f'it is a {detected} checkpoint: convert it with --arch {detected} (or without '
               f'--arch) and use {ARCHS[detected]["config"]}')
    else:
        fix = ('this is not one of the supported HAT releases (' + ', '.join(ARCHS) + '); '
               'check that the right file was given')
    return CheckpointError(f'{src}: expected a {requested} checkpoint ({expected}), found '
                           f'{_spec_text(found)}. Fix: {fix}. Nothing was written.')


def convert_state_dict(state_dict: Dict[str, torch.Tensor], arch: Optional[str] = None,
                       src: str = 'the checkpoint', hint: Optional[str] = None
                       ) -> Tuple[str, 'OrderedDict[str, torch.Tensor]']:
    """Detect (or check) the arch and map the keys; returns (arch, converted state dict).

    The result is not yet verified against the target model (see :func:`convert_checkpoint`).
    """
    if arch is not None and arch not in ARCHS:
        raise CheckpointError(f'unknown --arch {arch!r}; choose one of {", ".join(ARCHS)}.')
    found = describe_state_dict(state_dict)
    detected = detect_arch(state_dict)
    if arch is not None and detected != arch:
        raise _refuse(src, arch, found, detected)
    if detected is None:
        hinted = TIMM_NAME_TO_ARCH.get(hint or '')
        raise CheckpointError(
            f'{src}: the weights match none of the supported architectures '
            f'({", ".join(ARCHS)}); found {_spec_text(found)} (first keys: '
            f'{first_keys(state_dict)})'
            + (f'; its name says {hint} ({hinted}: {_spec_text(ARCHS[hinted])})'
               if hinted else '')
            + '. Fix: convert a HAT release of ViT-T/S/B or Swin-T/S/B (timm classifier '
            'checkpoint); the VOLO and DeiT-B distilled releases convert with '
            'tools/model_converters/timm_volo_deit_to_mmpretrain.py. Nothing was written.')
    if hint in TIMM_NAME_TO_ARCH and TIMM_NAME_TO_ARCH[hint] != detected:
        print(f'warning: {src} is named/recorded as {hint} ({TIMM_NAME_TO_ARCH[hint]}) but its '
              f'weights are {detected} ({_spec_text(found)}); converting as {detected}.',
              file=sys.stderr)
    convert = convert_swin if ARCHS[detected]['family'] == 'swin' else convert_vit
    return detected, convert(state_dict)


def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None,
                       ema: bool = False) -> dict:
    """Convert the release ``src`` to the mmengine checkpoint ``dst``; returns its meta.

    Refuses ``dst == src``, another arch than ``arch``, and anything that does not match the
    model of the arch's config key for key and shape; nothing is written then.
    """
    check_output_path(src, dst)
    state, info = load_release(src, ema=ema)
    hint = timm_name_hint(src, info)
    arch, converted = convert_state_dict(state, arch=arch, src=src, hint=hint)

    model = build_target_model(arch)
    target = model.state_dict()
    # relative_position_index is a constant of the window size; the release's (if any) must
    # be the one of the target, otherwise its bias tables would be read in another order.
    for k in [k for k in target if k.endswith('relative_position_index')]:
        if k in converted and not torch.equal(converted[k].long(), target[k].long()):
            raise CheckpointError(f'{src}: {k} differs from the index of mmpretrain\'s '
                                  'WindowMSA; the relative position tables cannot be mapped.')
        converted[k] = target[k].clone()
    verify_against_target(converted, target, arch, ARCHS[arch]['config'], src)
    out_state = OrderedDict((k, converted[k].to(target[k].dtype).contiguous()) for k in target)
    out_state._metadata = getattr(target, '_metadata', None)  # module versions, as mmengine

    meta = release_meta(src, info, arch, ARCHS[arch]['config'], hint, ema,
                        'tools/model_converters/timm_to_mmpretrain.py')
    if ARCHS[arch]['family'] == 'vit':
        _note_vit_normalisation(src, hint, meta['timm_args'])
    save_converted(dst, out_state, meta)
    return meta


def _note_vit_normalisation(src: str, hint, args: dict) -> None:
    """configs/hat_vit_*.py normalise as timm's vit_*_patch16_224 (mean = std = 0.5), as the
    official HAT releases were trained; a release trained otherwise (a deit_* model name, or
    explicit --mean/--std) gets the --cfg-options that evaluate it as it was trained."""
    mean = args.get('mean')
    if mean is None and isinstance(hint, str) and hint.startswith('deit_'):
        mean, std = IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # timm's DeiT default_cfg
    elif mean is not None:
        std = args.get('std') or (0.5, 0.5, 0.5)
    if mean is None or all(abs(float(m) - 0.5) < 1e-6 for m in mean):
        return
    px = [round(255 * float(m), 3) for m in mean], [round(255 * float(s), 3) for s in std]
    print(f'note: {src} was trained with mean={list(mean)} std={list(std)}, while '
          'configs/hat_vit_*.py normalise with mean = std = 0.5 (timm\'s vit_* default). '
          f'Evaluate it with --cfg-options "data_preprocessor.mean={px[0]}" '
          f'"data_preprocessor.std={px[1]}".', file=sys.stderr)


def main(argv=None) -> int:
    return run_cli(argv, 'Convert a HAT release checkpoint (timm 0.4.x, hat_<timm name>'
                   '.pth.tar) to an mmpretrain checkpoint for configs/hat_*.py.', ARCHS,
                   convert_checkpoint)


if __name__ == '__main__':
    sys.exit(main())

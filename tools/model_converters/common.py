"""What the release converters share: loading a timm training checkpoint, naming its model,
checking the converted weights against the target model, and writing the result.

Loading, key/shape comparison and atomic writing are :mod:`hat_mm.utils.checkpoint`'s; this
module adds what is particular to timm releases (``args`` as an ``argparse.Namespace``,
``state_dict_ema``) and to the converters' command line.
"""
import argparse
import os
import os.path as osp
import re
import sys
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

from hat_mm.utils import (CheckpointError, compare_state_dicts, describe_mismatch,  # noqa: E402
                          format_names, load_checkpoint_file, save_checkpoint_atomically,
                          state_dict_of)


def load_release(src: str, ema: bool = False) -> Tuple[Dict[str, torch.Tensor], dict]:
    """The weights (or EMA weights) of a timm checkpoint and its other fields, weights-only
    (timm pickles its ``args`` as an ``argparse.Namespace``: allowed for this file only)."""
    what = 'release checkpoint'
    ckpt = load_checkpoint_file(src, what, allow=[argparse.Namespace])
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{what} {src} holds a {type(ckpt).__name__}, not a dict with '
                              'a state_dict.')
    if ema and not isinstance(ckpt.get('state_dict_ema'), dict):
        raise CheckpointError(f'{what} {src} has no EMA weights (state_dict_ema); convert it '
                              'without --ema.')
    keys = ('state_dict_ema', ) if ema else ('state_dict', 'model')
    state = OrderedDict(state_dict_of(ckpt, f'{what} {src}', keys))
    if any(k.startswith('backbone.') for k in state):
        raise CheckpointError(
            f'{src} is in mmpretrain\'s layout already (its keys start with backbone.: a '
            'checkpoint of tools/train.py, or one converted before), not a timm release: it '
            f'needs no conversion. Use it as it is: python tools/test.py CONFIG {src}, or for '
            'detection and segmentation --cfg-options model.backbone.init_cfg.checkpoint='
            f'{src}. Nothing was written.')
    info = {k: v for k, v in ckpt.items()
            if k not in ('state_dict', 'state_dict_ema', 'model', 'optimizer', 'amp_scaler')}
    return state, info


def first_keys(state_dict: Dict, n: int = 6) -> str:
    return format_names(list(state_dict), n)


def timm_name_hint(src: str, info: dict) -> Optional[str]:
    """The timm model name recorded in the release (``args.model``, ``arch``) or its name."""
    args = info.get('args')
    for name in (getattr(args, 'model', None), info.get('arch')):
        if isinstance(name, str) and name:
            return name
    m = re.match(r'hat_(.+?)\.pth(\.tar)?$', osp.basename(src))
    return m.group(1) if m else None


def build_config_model(config: str, meta: bool = False):
    """The classifier that ``config`` (relative to the repository) builds, with PyTorch's
    default init, or on the meta device (keys, shapes and dtypes only)."""
    import mmengine
    from mmpretrain.registry import MODELS

    import hat_mm  # noqa: F401  (registers the HAT classifiers)
    from hat_mm.engine import apply_hat
    cfg = apply_hat(mmengine.config.Config.fromfile(osp.join(ROOT, config)))
    if not meta:
        return MODELS.build(cfg.model)
    with torch.device('meta'):
        return MODELS.build(cfg.model)


def verify_against_target(converted: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor],
                          arch: str, config: str, src: str = '') -> None:
    """Every target key present, none extra, equal shapes; raises CheckpointError naming them."""
    mismatch = describe_mismatch(
        compare_state_dicts(target, converted, source='converted'), n=8,
        labels=('missing', 'not in the model', 'shape mismatch'))
    if mismatch:
        raise CheckpointError(
            f'{src or "the checkpoint"} converted for {arch} does not match the model of '
            f'{config} ({mismatch}). Check that the checkpoint is a {arch} ImageNet-1k '
            'classifier (--arch), or that the config was not changed (e.g. num_classes); '
            'nothing was written.')


def check_output_path(src: str, dst: str) -> None:
    """Refuse to write the converted checkpoint over the release it comes from, onto a
    folder, or where its folder cannot be made (before anything is converted)."""
    if osp.abspath(dst) == osp.abspath(src) or (
            osp.exists(dst) and osp.exists(src) and osp.samefile(dst, src)):
        raise CheckpointError(f'the output {dst} is the input checkpoint; give another output '
                              'path (the release is never overwritten).')
    if osp.isdir(dst):
        raise CheckpointError(f'the output {dst} is a folder; give the path of a .pth file, '
                              f'e.g. {osp.join(dst, "converted.pth")}')
    try:
        os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    except OSError as err:
        raise CheckpointError(f'the output {dst}: its folder cannot be made ({err}); give '
                              'another path. Nothing was written.') from None


TIMM_ARG_KEYS = ('model', 'mean', 'std', 'input_size', 'img_size', 'crop_pct',
                 'interpolation', 'token_label_size', 'distillation_type')


def _plain(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
        return list(v)
    return None


def release_meta(src: str, info: dict, arch: str, config: str, hint, ema: bool,
                 converter: str) -> dict:
    """The ``meta`` of a converted checkpoint: where it came from and the training args."""
    args = info.get('args')
    args = vars(args) if isinstance(args, argparse.Namespace) else {}
    return dict(
        arch=arch, config=config, converted_from=osp.basename(src), converter=converter,
        ema=bool(ema), timm_model=hint, epoch=_plain(info.get('epoch')),
        timm_args={k: _plain(args[k]) for k in TIMM_ARG_KEYS
                   if k in args and (args[k] is None or _plain(args[k]) is not None)})


def save_converted(dst: str, state: dict, meta: dict) -> None:
    """Write ``{'state_dict', 'meta'}`` atomically (no half-written file on failure)."""
    save_checkpoint_atomically({'state_dict': state, 'meta': meta}, dst)


def run_cli(argv, description: str, archs, convert) -> int:
    """The command line shared by the release converters."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='release checkpoint (not modified)')
    parser.add_argument('dst', help='output mmengine checkpoint (.pth)')
    parser.add_argument('--arch', choices=list(archs), default=None,
                        help='expected architecture; detected from the weights if omitted')
    parser.add_argument('--ema', action='store_true',
                        help='convert the EMA weights (state_dict_ema) instead')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace dst if it exists (otherwise an existing dst is refused)')
    args = parser.parse_args(argv)
    if osp.exists(args.dst) and not args.overwrite:
        print(f'error: {args.dst} exists already (another conversion or checkpoint?); nothing '
              'was converted. Give another dst, or --overwrite to replace it.', file=sys.stderr)
        return 1
    try:
        meta = convert(args.src, args.dst, arch=args.arch, ema=args.ema)
    except (CheckpointError, OSError) as e:  # OSError: the output could not be written
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'converted {args.src} ({meta["arch"]}{", EMA" if meta["ema"] else ""}) -> '
          f'{args.dst}; use it with {meta["config"]}, e.g. python tools/test.py '
          f'{meta["config"]} {args.dst}')
    return 0

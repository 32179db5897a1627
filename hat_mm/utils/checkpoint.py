"""Checkpoint safety: weights-only loading of mmengine checkpoints, clear errors.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7 stores a few of its own and
numpy objects in checkpoints (the message hub's ``HistoryBuffer`` ...), so its ``resume``
fails. Instead of turning the protection off for every file, the few classes that mmengine
writes are added to torch's allow-list of safe globals. ``HistoryBuffer`` pickles its
statistics methods as ``getattr(HistoryBuffer, 'mean')``; allowing ``getattr`` itself would
open the door to arbitrary code, so the name ``builtins.getattr`` is mapped to
:func:`_history_buffer_getattr`, which resolves those methods and nothing else.
"""
import pickle
import os.path as osp
import zipfile
from typing import Dict

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the reason and the fix in the message."""


_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')  # registered by mmengine itself


def _history_buffer_getattr(obj, name: str):
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, type) and issubclass(obj, HistoryBuffer) \
            and (name in _HISTORY_BUFFER_METHODS or name in HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed when loading weights only')


def allow_mmengine_checkpoint_classes() -> None:
    """Allow-list the classes mmengine puts in its checkpoints for weights-only loading."""
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is None:  # torch < 2.4 loads without weights_only by default
        return
    from mmengine.logging import HistoryBuffer
    from numpy.core.multiarray import _reconstruct, scalar
    safe = [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype]
    # numpy dtypes as pickled by numpy >= 1.25: numpy.dtypes.Float64DType, ...
    safe += [type(np.dtype(t)) for t in
             ('float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64', 'uint8',
              'bool', 'complex64', 'complex128')]
    safe.append((_history_buffer_getattr, 'builtins.getattr'))
    add(safe)


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> None:
    """Fail early, naming the file, when ``path`` is missing or not a readable checkpoint.

    A torch zip checkpoint is verified entry by entry (CRC), which finds truncated and
    corrupted files without unpickling them.
    """
    if '://' in str(path):
        return
    if not osp.isfile(path):
        raise CheckpointError(f'{what} {path} does not exist. Check the path (for --resume '
                              'without a path the latest checkpoint of --work-dir is used).')
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            bad = f'unreadable archive ({e})'
        if bad is None:
            return
        reason = f'entry {bad!r} is damaged'
    else:
        with open(path, 'rb') as f:
            head = f.read(2)
        if head[:1] == b'\x80':  # legacy (pre-zip) torch.save format: a pickle stream
            return
        reason = 'it is neither a torch zip archive nor a legacy torch pickle ' \
                 '(truncated or corrupt download?)'
    raise CheckpointError(f'{what} {path} is corrupt: {reason}. Re-download or re-create it, '
                          'or point to another checkpoint; nothing was loaded.')


def _unwrap_state_dict(ckpt) -> Dict[str, torch.Tensor]:
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise CheckpointError(f'expected a state dict, got {type(state).__name__}')
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}


def load_weights_strict(model: torch.nn.Module, path: str) -> None:
    """Load the weights of ``path`` into ``model``; every key and shape must match.

    A mismatch is reported by name (missing, unexpected, wrong shape) and nothing is loaded.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    check_checkpoint_file(path)
    try:
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except Exception as e:  # unpickling errors come in many types
        raise CheckpointError(f'checkpoint {path} could not be loaded: {e}') from e
    state = _unwrap_state_dict(ckpt)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
              for k in own if k in state and hasattr(state[k], 'shape')
              and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def show(items):
            return ', '.join(items[:10]) + (f' ... ({len(items)} in all)' if len(items) > 10
                                             else '')
        parts = [f'missing in checkpoint: {show(missing)}' if missing else '',
                 f'not in model: {show(unexpected)}' if unexpected else '',
                 f'shape mismatch: {show(shapes)}' if shapes else '']
        raise CheckpointError(
            f'checkpoint {path} does not match the model of this config ('
            + '; '.join(p for p in parts if p) + '). Use the config the checkpoint was '
            'trained with (architecture, num_classes), or convert the checkpoint '
            '(tools/model_converters/). Nothing was loaded.')
    model.load_state_dict(state, strict=True)

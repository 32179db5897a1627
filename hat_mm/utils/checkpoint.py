"""Checkpoints in one place: checking, weights-only loading, comparing and writing them.

Every checkpoint that hat-mm reads (``--resume``, ``tools/test.py``, pretrained weights,
teachers, the release converters) goes through :func:`load_checkpoint_file`; every state dict
is compared with its model by :func:`compare_state_dicts` before anything is loaded.

torch >= 2.6 loads with ``weights_only=True``; mmengine 0.10.7 stores a few of its own and
numpy objects in checkpoints (the message hub's ``HistoryBuffer`` ...), so its ``resume``
fails. Instead of turning the protection off for every file, the few classes that mmengine
writes are added to torch's allow-list of safe globals. ``HistoryBuffer`` pickles its
statistics methods as ``getattr(HistoryBuffer, 'mean')``; allowing ``getattr`` itself would
open the door to arbitrary code, so the name ``builtins.getattr`` is mapped to
:func:`_history_buffer_getattr`, which resolves those methods and nothing else. A file that
holds anything else is refused by name; the advice is never to switch the protection off.
"""
import os
import os.path as osp
import pickle
import zipfile
from contextlib import nullcontext
from typing import Dict, Iterable, Mapping, Optional, Sequence

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


# -- files ------------------------------------------------------------------------------
# A legacy (pre-zip) torch.save file is a pickle stream whose first object is torch's magic
# number: PROTO n, then LONG1 with its 10 little-endian bytes.
_LEGACY_MAGIC = b'\x8a\x0a' + torch.serialization.MAGIC_NUMBER.to_bytes(10, 'little')


def check_checkpoint_file(path: str, what: str = 'checkpoint') -> None:
    """Fail early, naming the file, when ``path`` is missing or not a readable checkpoint.

    A torch zip checkpoint is verified entry by entry (CRC), which finds truncated and
    corrupted files without unpickling them; a legacy torch file must start with torch's
    magic number.
    """
    if '://' in str(path):
        return
    if osp.isdir(path):
        raise CheckpointError(f'{what} {path} is a folder, not a checkpoint file: give a .pth '
                              'file in it (its last_checkpoint file names the latest).')
    if not osp.isfile(path):
        raise CheckpointError(
            f'{what} {path} does not exist. Check the path'
            + (' (for --resume without a path the latest checkpoint of --work-dir is used).'
               if 'resume' in what else '.'))
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
            head = f.read(32)
        if len(head) > 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and _LEGACY_MAGIC in head:
            return
        reason = 'it is neither a torch zip archive nor a legacy torch file ' \
                 '(truncated or corrupt download?)'
    raise CheckpointError(f'{what} {path} is corrupt: {reason}. Re-download or re-create it, '
                          'or point to another checkpoint; nothing was loaded.')


def _refusal(error: Exception) -> str:
    """What torch refused, without its advice to switch the protection off or to allow-list
    whatever the file names."""
    lines = [line.replace('WeightsUnpickler error:', '').split(' Please use')[0].strip()
             for line in str(error).splitlines()
             if 'weights_only' not in line and not line.strip().startswith(
                 ('Check the documentation', 'Please file an issue'))]
    return ' '.join(line for line in lines if line)[:300] or type(error).__name__


def load_checkpoint_file(path: str, what: str = 'checkpoint', allow: Sequence = (),
                         map_location='cpu', mmap: bool = False):
    """Check ``path`` and load it weights-only with mmengine's ``CheckpointLoader``.

    Args:
        allow: extra classes allowed in this file only (``argparse.Namespace`` for timm's
            training checkpoints); nothing is added to the global allow-list.
        mmap: for checks that read keys and shapes only: a local zip checkpoint is mapped
            (``torch.load(mmap=True)``), so its tensors are not read into memory (every rank
            of a distributed run checks the file before mmengine loads it).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    check_checkpoint_file(path, what)
    context = torch.serialization.safe_globals(list(allow)) if allow else nullcontext()
    try:
        with context:
            if mmap and '://' not in str(path) and zipfile.is_zipfile(path):
                return torch.load(path, map_location=map_location, weights_only=True,
                                  mmap=True)
            return CheckpointLoader.load_checkpoint(path, map_location=map_location)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f'{what} {path} holds objects that are not plain weights ({_refusal(e)}); it was '
            'not written by mmengine, timm or hat-mm, or it carries code. It was not loaded: '
            'use a checkpoint saved by tools/train.py or converted with '
            'tools/model_converters/.') from None
    except Exception as e:  # torch / zip errors come in many types
        raise CheckpointError(f'{what} {path} could not be loaded: {_refusal(e)}') from None


def state_dict_of(ckpt, what: str = 'checkpoint', keys: Sequence[str] = ('state_dict', 'model')
                  ) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint's state dict (the first of ``keys`` that holds a dict, or
    the checkpoint itself), with DDP's ``module.`` prefixes removed."""
    state = next((ckpt[k] for k in keys if isinstance(ckpt, dict)
                  and isinstance(ckpt.get(k), dict)), ckpt)
    if not isinstance(state, dict) or not any(torch.is_tensor(v) for v in state.values()):
        found = format_names(list(ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f'{what} holds no state dict (looked for {list(keys)}; found '
                              f'{found}).')
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()
            if torch.is_tensor(v)}


# -- comparing --------------------------------------------------------------------------
def load_pretrained_state(checkpoint: str, prefix: Optional[str] = None,
                          what: str = 'pretrained checkpoint') -> dict:
    """The weights of a ``Pretrained`` init_cfg's ``checkpoint`` as its module sees them: the
    keys starting with ``prefix`` (e.g. ``'backbone.'``), the prefix stripped. Mapped, not
    read (keys and shapes only). A file without such keys (a timm release, not converted)
    is refused with its first keys and the converter to use."""
    state = state_dict_of(load_checkpoint_file(checkpoint, what, mmap=True),
                          f'{what} {checkpoint}')
    if not prefix:
        return state
    found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not found:
        raise CheckpointError(
            f"{what} {checkpoint} has no key starting with prefix='{prefix}' (its first "
            f'keys: {format_names(list(state), 4)}). A timm checkpoint (an official HAT '
            'release) needs converting first: python tools/model_converters/'
            'timm_to_mmpretrain.py SRC DST (VOLO, DeiT-B distilled: '
            'timm_volo_deit_to_mmpretrain.py); otherwise fix init_cfg.prefix.')
    return found


def format_names(items: Iterable[str], n: int = 10) -> str:
    """``a, b, c ... (n in all)``: the first ``n`` items and the count."""
    items = list(items)
    return ', '.join(items[:n]) + (f' ... ({len(items)} in all)' if len(items) > n else '')


def compare_state_dicts(model_state: Mapping, ckpt_state: Mapping, allow_missing=(),
                        source: str = 'checkpoint') -> Dict[str, list]:
    """Keys of ``model_state`` missing from ``ckpt_state`` (except those starting with one of
    ``allow_missing``), keys only in ``ckpt_state``, and keys whose shapes differ."""
    def shape(v):
        return tuple(v.shape) if hasattr(v, 'shape') else None
    return dict(
        missing=[k for k in model_state if k not in ckpt_state
                 and not any(k.startswith(a) for a in allow_missing)],
        unexpected=[k for k in ckpt_state if k not in model_state],
        shape=[f'{k}: {source} {shape(ckpt_state[k])} vs model {shape(v)}'
               for k, v in model_state.items() if k in ckpt_state
               and shape(ckpt_state[k]) != shape(v)])


def describe_mismatch(result: Dict[str, list], n: int = 10,
                      labels=('missing in checkpoint', 'not in model', 'shape mismatch')
                      ) -> str:
    """``'missing in checkpoint: ...; not in model: ...'`` for what does not match, or ''."""
    parts = zip(labels, (result['missing'], result['unexpected'], result['shape']))
    return '; '.join(f'{label}: {format_names(keys, n)}' for label, keys in parts if keys)


def load_weights_strict(model: torch.nn.Module, path: str, what: str = 'checkpoint',
                        allow: Sequence = (), fix: Optional[str] = None) -> None:
    """Load the weights of ``path`` into ``model``; every key and shape must match.

    A mismatch is reported by name (missing, unexpected, wrong shape) and nothing is loaded.
    """
    state = state_dict_of(load_checkpoint_file(path, what, allow), f'{what} {path}')
    mismatch = describe_mismatch(compare_state_dicts(model.state_dict(), state))
    if mismatch:
        raise CheckpointError(
            f'{what} {path} does not match the model of this config ({mismatch}). '
            + (fix or 'Use the config the checkpoint was trained with (architecture, '
               'num_classes), or convert the checkpoint (tools/model_converters/).')
            + ' Nothing was loaded.')
    model.load_state_dict(state, strict=True)


# -- writing ----------------------------------------------------------------------------
def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either its old self or complete.

    The bytes go to a hidden temporary file in the same directory, are flushed and synced
    to disk, then renamed over ``path``. On failure (a full disk) the temporary file is
    removed, ``path`` is untouched, and the error names the file.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if osp.exists(tmp):
            os.remove(tmp)
        raise OSError(e.errno, f'could not write {path} ({e.strerror or e}); the partial file '
                      f'was removed and {path} is unchanged') from e
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # not every file system can sync a directory
        pass


def save_checkpoint_atomically(checkpoint, path: str) -> None:
    """``torch.save`` through :func:`write_atomically`."""
    import io
    with io.BytesIO() as buffer:
        torch.save(checkpoint, buffer)
        write_atomically(path, buffer.getvalue())

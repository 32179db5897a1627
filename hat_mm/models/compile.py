"""``torch.compile`` for HAT classifiers: ``model.compile=True`` (or a dict of
``torch.compile`` arguments, e.g. ``dict(mode='max-autotune-no-cudagraphs')``).

What is compiled are the modules the classifier calls (``hat_compile_modules()``: backbone,
neck and head, or the timm model), each through ``nn.Module.compile``. That keeps the module
tree and the state-dict keys as they are, so checkpoints, ``init_cfg``, EMA copies and DDP
see the same model. The HAT loop around them (Python control flow, the optim wrapper, DDP's
``no_sync``) stays eager: it is a handful of launches per pass.

One HAT iteration calls a compiled module in three autograd situations: the clean forward
under ``no_grad``, the passes ``1..K-1`` whose input requires grad (for ``delta``), and the
last pass whose input does not. So each module compiles three graphs in the first iteration
(one more for validation, and once more with a dynamic batch size when a smaller last batch
comes), and none in later iterations; ``tests/test_fast_paths.py`` counts them.

``devices`` (a key of hat-mm's, not of ``torch.compile``) restricts compiling to the device
types a run trains on, e.g. ``compile=dict(devices=['cuda'])``: a config can turn compiling
on for GPU runs and still run eager on CPU (a demo, the tests), where inductor's compile time
rarely pays and its C++ code is less safe: with torch 2.12 on CPU, the no-grad clean forward
of VOLO's outlook attention compiles to a kernel that corrupts the heap and aborts the process
(gone with ``torch._inductor.config.cpp.simdlen = 1``, i.e. without vectorisation; a bug like
pytorch/pytorch#196681, found here, not reported upstream). The decision is taken at the
model's first forward, when its device is known; a run on another device logs one line and
runs eager.

CUDA graphs are refused (``mode='reduce-overhead'`` or ``'max-autotune'``, ``backend=
'cudagraphs'``, ``options={'triton.cudagraphs': True}``): the K passes of a HAT step add into
the parameter gradients, and CUDA graph trees hand the gradient a pass produced to ``.grad``
in memory that the next replay writes over (pytorch/pytorch#169545 reports the error it
gives; #96693 wrong accumulated gradients). Measured on an H100 (ViT-B, bf16, 2026-11-27) the
HAT step ran at 0.24x the eager one with ``reduce-overhead``.

mmpretrain's ViT builds its ``DropPath`` layers with numpy ``drop_prob`` values, on which
dynamo breaks the graph (it traces ``drop_prob == 0`` as a data-dependent branch); they are
turned into Python floats first.
"""
import inspect
from typing import Iterable, Union

import numpy as np
import torch

COMPILE_ARGS = sorted(n for n in inspect.signature(torch.compile).parameters if n != 'model')
DEVICE_TYPES = ('cpu', 'cuda', 'xpu', 'mps', 'hpu', 'npu', 'mlu', 'musa')


def compile_kwargs(value: Union[None, bool, dict]) -> Union[None, dict]:
    """``model.compile`` as ``torch.compile`` keyword arguments (None: do not compile), plus
    ``devices`` (a tuple of device types) when the config restricts it."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f'model.compile={value!r}: expected True/False or a dict of '
                        f'torch.compile arguments ({COMPILE_ARGS}) and devices.')
    unknown = sorted(set(value) - set(COMPILE_ARGS) - {'devices'})
    if unknown:
        raise ValueError(f'model.compile has unknown torch.compile argument(s) {unknown}; '
                         f'valid ones are {COMPILE_ARGS}, and devices (the device types to '
                         'compile on).')
    kwargs = dict(value)
    if 'devices' in kwargs:
        devices = kwargs['devices']
        devices = (devices, ) if isinstance(devices, str) else tuple(devices or ())
        bad = [d for d in devices if d not in DEVICE_TYPES]
        if not devices or bad:
            raise ValueError(f'model.compile.devices={value["devices"]!r}: give device types '
                             f'to compile on, of {list(DEVICE_TYPES)}, e.g. [\'cuda\'].')
        kwargs['devices'] = devices
    _refuse_cuda_graphs(kwargs)
    return kwargs


def _refuse_cuda_graphs(kwargs: dict) -> None:
    from torch._inductor import list_mode_options
    mode, options = kwargs.get('mode'), kwargs.get('options') or {}
    modes = list_mode_options(None)  # every mode and the inductor options it sets
    if mode is not None and mode not in modes:
        raise ValueError(f'model.compile.mode={mode!r} is not a torch.compile mode; valid ones '
                         f'are {sorted(modes)}.')
    by_mode = modes.get(mode, {}).get('triton.cudagraphs', False)
    graphs = kwargs.get('backend') == 'cudagraphs' or options.get('triton.cudagraphs', by_mode)
    if graphs:
        what = ', '.join(f'{k}={kwargs[k]!r}' for k in ('mode', 'backend', 'options')
                         if k in kwargs)
        raise ValueError(
            f'model.compile ({what}) turns on CUDA graphs, which the HAT step cannot use: its '
            'K passes add into the parameter gradients, and CUDA graph trees reuse the memory '
            'of one pass\'s gradients in the next (wrong gradients or an error; on an H100 '
            'it also ran at 0.24x the eager step). Use mode=\'default\' or '
            'mode=\'max-autotune-no-cudagraphs\', without options[\'triton.cudagraphs\'].')


def python_float_drop_probs(model: torch.nn.Module) -> int:
    """Turn numpy ``drop_prob`` attributes (DropPath) into Python floats; returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(getattr(module, 'drop_prob', None), np.generic):
            module.drop_prob = float(module.drop_prob)
            count += 1
    return count


def compile_modules(model: torch.nn.Module, modules: Iterable[torch.nn.Module],
                    kwargs: dict) -> int:
    """Compile each of ``modules`` (submodules of ``model``) in place; returns how many."""
    python_float_drop_probs(model)
    count = 0
    for module in modules:
        module.compile(**kwargs)
        count += 1
    return count

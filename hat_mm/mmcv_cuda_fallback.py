"""mmcv's detection ops on CUDA tensors through torchvision, for an mmcv built with CPU ops only.

Why. mmcv 2.1.0 (the newest mmdet 3.3 and mmseg 1.2 accept) has no wheel for current torch and
is built from source. On a GPU machine without a CUDA toolkit (the package index's torch
wheels bring CUDA's runtime, not ``nvcc``) ``tools/setup_env.sh`` builds it with its CPU ops
only, and such a wheel can also come from a shared wheel cache. That mmcv runs its ops on CPU
tensors, and on a CUDA tensor stops with ``<op>_impl: implementation for device cuda:0 not
found``: Cascade Mask R-CNN could not train on a GPU.

What. mmdet 3.3's Cascade Mask R-CNN calls four mmcv entry points on the GPU:

- ``mmcv.ops.RoIAlign``: the box and mask RoI extractors (``SingleRoIExtractor``);
- ``mmcv.ops.roi_align``: mask targets, ``BitmapMasks.crop_and_resize``
  (``mmdet/structures/mask/structures.py`` imports it from ``mmcv.ops.roi_align``);
- ``mmcv.ops.nms`` and ``mmcv.ops.batched_nms``: RPN proposals and test-time NMS
  (``batched_nms`` is Python that calls ``nms``, on one or, above ``split_thr``, per class).

All of them end in three functions of mmcv's extension module ``mmcv._ext``:
``roi_align_forward`` and ``roi_align_backward`` (``RoIAlignFunction``, so gradients flow) and
``nms`` (``NMSop``). Every ``mmcv.ops`` module holds that one module object, so :func:`install`
replaces the three functions there, once, for every caller: CUDA tensors go to torchvision's
kernels (``torchvision.ops.roi_align`` with ``aligned``, its backward, ``torchvision.ops.nms``;
torchvision's wheels carry CUDA kernels), CPU tensors to mmcv's own kernels. Every other
function of ``mmcv._ext`` refuses CUDA tensors with a message that names the op and the fix,
an mmcv built with CUDA ops (``HAT_MM_MMCV_CUDA=1 bash tools/setup_env.sh``).

:func:`install` runs on ``import hat_mm`` (configs import it through ``custom_imports``) and
changes nothing when mmcv was built with CUDA ops (``mmcv.ops.get_compiling_cuda_version()``
is then not ``'not available'``) or without ops at all. It is idempotent.

Numbers (``tests/test_mmcv_cuda_fallback.py`` compares the torchvision path with mmcv's CPU
kernels on CPU tensors):

- RoIAlign, ``pool_mode='avg'``: the same algorithm (Detectron's) in both libraries; forward
  and backward agree bit for bit in float32 and float64, ``aligned`` True or False, any
  ``sampling_ratio``, boxes partly or wholly outside the map, empty or sub-pixel boxes, no
  boxes. The scale is rounded to float32 first, as mmcv's binding does. float16/bfloat16
  inputs are computed in float32 and cast back (as torchvision's autocast does; mmcv's CUDA
  kernel computes in float16). ``pool_mode='max'`` has no torchvision kernel: refused on CUDA
  with the fix.
- nms: the greedy algorithm and the IoU test ``inter / union > thr`` of mmcv's CPU kernel (its
  CUDA kernel tests ``inter > thr * union``, which can decide an IoU that rounds to the
  threshold the other way), threshold rounded to float32 as mmcv does, boxes in float32 (mmcv's
  kernels take float32 only). Exactly tied scores: mmcv orders the boxes with torch's
  *unstable* sort, so which of two tied, overlapping boxes survives is whatever that sort puts
  first (not the lower index, and on CUDA not what the CPU sort gives). The fallback sorts the
  scores on the CPU as mmcv's CPU kernel does and hands torchvision strictly decreasing ranks
  in that order, so its kept indices, and their order, are those of mmcv's CPU kernel, ties
  included (the cost: the scores copied to the host once per call; torchvision's CUDA nms
  copies its N x N/64 overlap mask there anyway). ``offset=1`` (legacy ``x2 - x1 + 1``
  widths) widens the boxes by 1: identical for integer coordinates, possibly one rounding step
  apart otherwise.
"""
import functools

import numpy as np
import torch

FULL_BUILD_FIX = 'HAT_MM_MMCV_CUDA=1 bash tools/setup_env.sh'
_INSTALLED = '_hat_mm_cuda_fallback_originals'  # attribute set on the patched ext module


def needs_fallback(tensor: torch.Tensor) -> bool:
    """Whether mmcv's CPU-ops build cannot run on ``tensor``: it is on a CUDA device. (Tests
    replace this check to run the CUDA route on CPU tensors.)"""
    return tensor.is_cuda


def mmcv_cpu_ops_ext():
    """mmcv's extension module if it was built with CPU ops only, else None (mmcv built with
    CUDA ops, or mmcv without compiled ops)."""
    try:
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['get_compiling_cuda_version'])
    except (ImportError, AssertionError):
        return None
    return ext if ext.get_compiling_cuda_version() == 'not available' else None


def _float32(value: float) -> float:
    """``value`` as mmcv's C++ binding sees a ``float`` argument."""
    return float(np.float32(value))


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    return torch.float32 if tensor.dtype in (torch.float16, torch.bfloat16) else tensor.dtype


def _avg_pool_only(pool_mode: int) -> None:
    if pool_mode != 1:
        raise RuntimeError(
            "mmcv RoIAlign(pool_mode='max') on a CUDA tensor: this mmcv was built with CPU ops "
            "only and torchvision's roi_align averages. Use pool_mode='avg', or build mmcv "
            f'with CUDA ops: {FULL_BUILD_FIX}')


def roi_align_forward(input, rois, output, argmax_y, argmax_x, aligned_height, aligned_width,
                      spatial_scale, sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_forward`` through torchvision: writes ``output`` in place."""
    import torchvision  # noqa: F401  registers torch.ops.torchvision
    _avg_pool_only(pool_mode)
    dtype = _compute_dtype(input)
    pooled = torch.ops.torchvision.roi_align(
        input.to(dtype), rois.to(dtype), _float32(spatial_scale), int(aligned_height),
        int(aligned_width), int(sampling_ratio), bool(aligned))
    output.copy_(pooled)


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input, aligned_height,
                       aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
    """``mmcv._ext.roi_align_backward`` through torchvision: adds into ``grad_input``."""
    import torchvision  # noqa: F401
    _avg_pool_only(pool_mode)
    dtype = _compute_dtype(grad_output)
    batch, channels, height, width = grad_input.shape
    grad = torch.ops.torchvision._roi_align_backward(
        grad_output.to(dtype), rois.to(dtype), _float32(spatial_scale), int(aligned_height),
        int(aligned_width), batch, channels, height, width, int(sampling_ratio), bool(aligned))
    grad_input.add_(grad)


def nms(boxes, scores, iou_threshold, offset):
    """``mmcv._ext.nms`` through torchvision: indices of the kept boxes, highest score first,
    equal to those of mmcv's CPU kernel (ties included, see the module docstring)."""
    import torchvision  # noqa: F401
    if boxes.numel() == 0:
        return boxes.new_empty(0, dtype=torch.long)
    if boxes.size(0) >= 2**24:
        raise RuntimeError(f'nms of {boxes.size(0)} boxes: the CUDA fallback ranks boxes in '
                           'float32, exact below 2**24 boxes')
    # mmcv's CPU kernel: scores.sort(0, descending=True), torch's unstable sort, on the CPU.
    order = scores.detach().cpu().sort(0, True)[1].to(boxes.device)
    ordered = boxes.detach().index_select(0, order).float()
    if offset:
        ordered[:, 2:] += offset
    ranks = torch.arange(len(order), 0, -1, dtype=torch.float32, device=boxes.device)
    keep = torch.ops.torchvision.nms(ordered, ranks, _float32(iou_threshold))
    return order[keep]


SERVED = dict(roi_align_forward=roi_align_forward, roi_align_backward=roi_align_backward,
              nms=nms)


def _tensors(args, kwargs):
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))


def _dispatch(name, original):
    """``original`` for CPU tensors; ``SERVED[name]`` (or a clear error) for CUDA tensors."""

    @functools.wraps(original)
    def op(*args, **kwargs):
        if any(needs_fallback(t) for t in _tensors(args, kwargs)):
            fallback = SERVED.get(name)
            if fallback is None:
                raise RuntimeError(
                    f'mmcv op `{name}` got a CUDA tensor, but this mmcv was built with CPU ops '
                    'only (no CUDA kernels). hat-mm runs roi_align and nms on CUDA through '
                    'torchvision; every other mmcv op needs mmcv built with CUDA ops: '
                    f'{FULL_BUILD_FIX}')
            return fallback(*args, **kwargs)
        return original(*args, **kwargs)

    return op


def install(ext=None) -> bool:
    """Route the functions of ``ext`` (default: mmcv's extension module when it has CPU ops
    only) as the module docstring says. Returns whether the routing is in place; a second
    call changes nothing."""
    ext = mmcv_cpu_ops_ext() if ext is None else ext
    if ext is None:
        return False
    if hasattr(ext, _INSTALLED):
        return True
    originals = {name: getattr(ext, name) for name in dir(ext)
                 if not name.startswith('_') and callable(getattr(ext, name))
                 and not isinstance(getattr(ext, name), type)}
    for name, original in originals.items():
        setattr(ext, name, _dispatch(name, original))
    setattr(ext, _INSTALLED, originals)
    return True

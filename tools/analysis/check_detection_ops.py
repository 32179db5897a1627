#!/usr/bin/env python
"""Run the mmcv ops that Cascade Mask R-CNN calls (RoIAlign forward and backward, nms,
batched_nms with 80 classes) on a device and compare them with mmcv's CPU kernels on the
same numbers:

    python tools/analysis/check_detection_ops.py [--device cuda|cpu] [--json FILE]

``--device cuda`` (the default where a GPU is visible) checks what this machine really runs on
CUDA tensors: mmcv's CUDA kernels, or, with an mmcv built with CPU ops only, hat-mm's
torchvision route (``hat_mm/mmcv_cuda_fallback.py``). ``--device cpu`` (no GPU) forces that
route on CPU tensors: the same comparison of the fallback's logic. Prints one line per op,
writes the numbers to ``--json``, and exits with status 1 when an op is off (RoIAlign by more
than 1e-4, or nms keeping other boxes).
"""
import argparse
import json
import sys
from contextlib import nullcontext
from unittest import mock

import torch

TOLERANCE = 1e-4


def _inputs(gen):
    feats = torch.randn(2, 64, 48, 64, generator=gen)  # stride 4 of a 192x256 image
    xy = torch.rand(400, 2, generator=gen) * torch.tensor([256., 192.]) - 8
    wh = torch.rand(400, 2, generator=gen) * 96 + 1
    rois = torch.cat([torch.randint(0, 2, (400, 1), generator=gen).float(), xy, xy + wh], 1)
    # boxes on a 1/8 grid inside 128x128 (areas and unions exact in float32, so that CPU and
    # CUDA decide alike even at the threshold) and distinct scores (no ties to break)
    box_xy = torch.randint(0, 640, (3000, 2), generator=gen) / 8
    boxes = torch.cat([box_xy, box_xy + torch.randint(64, 384, (3000, 2), generator=gen) / 8], 1)
    scores = torch.randperm(3000, generator=gen).float() / 3000
    labels = torch.randint(0, 80, (3000,), generator=gen)
    return feats, rois, boxes, scores, labels


def _run(device, feats, rois, boxes, scores, labels):
    from mmcv import ops
    to = dict(device=device)
    x = feats.to(**to).requires_grad_()
    out = ops.RoIAlign(7, 0.25, 0, aligned=True)(x, rois.to(**to))
    weight = torch.linspace(-1, 1, out.numel()).view_as(out).to(**to)
    grad, = torch.autograd.grad((out * weight).sum(), x)
    keep = ops.nms(boxes.to(**to), scores.to(**to), 0.7)[1]
    batched = ops.batched_nms(boxes.to(**to), scores.to(**to), labels.to(**to),
                              dict(type='nms', iou_threshold=0.5))[1]
    return [t.detach().cpu() for t in (out, grad, keep, batched)]


def compare(device: str) -> dict:
    """The ops on ``device`` against mmcv's CPU kernels; a dict of numbers and ``passed``."""
    import hat_mm  # noqa: F401  installs the torchvision route for a CPU-ops mmcv
    from hat_mm import mmcv_cuda_fallback
    cpu_ops_build = mmcv_cuda_fallback.mmcv_cpu_ops_ext() is not None
    if device == 'cuda':
        route = 'torchvision (hat_mm fallback)' if cpu_ops_build else 'mmcv CUDA kernels'
        forced = nullcontext()
    elif cpu_ops_build:
        route = 'torchvision on CPU tensors (fallback logic, no GPU)'
        forced = mock.patch.object(mmcv_cuda_fallback, 'needs_fallback', lambda t: True)
    else:
        return dict(device=device, route='mmcv CUDA kernels', passed=None,
                    skipped='mmcv has CUDA ops and there is no GPU to run them on')
    data = _inputs(torch.Generator().manual_seed(0))
    ref = _run('cpu', *data)
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    with forced:
        got = _run(device, *data)
    result = dict(
        device=torch.cuda.get_device_name() if device == 'cuda' else 'cpu', route=route,
        roi_align_max_abs_diff=float((got[0] - ref[0]).abs().max()),
        roi_align_grad_max_abs_diff=float((got[1] - ref[1]).abs().max()),
        nms_kept=len(ref[2]), nms_same=bool(torch.equal(got[2], ref[2])),
        batched_nms_kept=len(ref[3]), batched_nms_same=bool(torch.equal(got[3], ref[3])),
        peak_memory_mb=(torch.cuda.max_memory_allocated() // 2**20 if device == 'cuda'
                        else None))
    result['passed'] = (result['roi_align_max_abs_diff'] <= TOLERANCE
                        and result['roi_align_grad_max_abs_diff'] <= TOLERANCE
                        and result['nms_same'] and result['batched_nms_same'])
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', choices=['cuda', 'cpu'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', help='write the numbers to this file')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no GPU is visible to torch on this machine')
    result = compare(args.device)
    for key, value in result.items():
        print(f'{key}: {value}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return 0 if result['passed'] in (True, None) else 1


if __name__ == '__main__':
    sys.exit(main())

"""Check that the detection ops run on this machine's device, called as mmdet calls them.

    python tools/check_env.py [--device cuda|cpu] [--seed 0]

Cascade Mask R-CNN (and any mmdet two-stage detector) calls four mmcv ops: ``RoIAlign`` in
its box and mask RoI extractors (``SingleRoIExtractor``), ``roi_align`` in
``BitmapMasks.crop_and_resize`` (mask targets), ``batched_nms`` for RPN proposals and
``nms`` for test-time detections. Each is run here through those same entry points on the
device (CUDA when a GPU is visible, else CPU) and compared with the same call on CPU tensors
(mmcv's CPU kernels). It prints a table and exits 1 with the fix when an op fails or
differs. ``tools/setup_env.sh`` runs it at the end of every set-up; ``run_checks`` returns
the rows for other tools.
"""
import argparse
import sys

import numpy as np
import torch

ATOL = 1e-4  # float32 kernels on another device sum in another order

FIX_NO_CUDA_KERNEL = (
    "this mmcv was built with CPU ops only, and nothing routed the op to torchvision's CUDA "
    'kernels. Fix: `import hat_mm` before building the model (it routes RoIAlign, roi_align '
    'and nms to torchvision on CUDA tensors), or build mmcv with CUDA ops: '
    'HAT_MM_MMCV_CUDA=1 bash tools/setup_env.sh (TORCH_CUDA_ARCH_LIST as needed)')
FIX_NO_KERNEL_IMAGE = (
    "mmcv's CUDA ops were built for other GPU architectures. Fix: rebuild with this GPU's "
    'compute capability, e.g. HAT_MM_MMCV_CUDA=1 TORCH_CUDA_ARCH_LIST="{cap}" '
    'bash tools/setup_env.sh')


def _boxes(gen, n, size, device):
    """``n`` random boxes (x1, y1, x2, y2) on a ``size`` image, some partly outside it."""
    xy = torch.rand(n, 2, generator=gen) * size * 1.1 - size * 0.05
    wh = torch.rand(n, 2, generator=gen) * size * 0.5 + 1.0
    return torch.cat([xy, xy + wh], dim=1).to(device)


def _roi_extractor(gen, device, out_size):
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    extractor = SingleRoIExtractor(
        roi_layer=dict(type='RoIAlign', output_size=out_size, sampling_ratio=0),
        out_channels=8, featmap_strides=[4, 8, 16, 32]).to(device)
    feats = tuple(torch.randn(2, 8, 64 // s, 64 // s, generator=gen).to(device)
                  for s in (1, 2, 4, 8))
    boxes = _boxes(gen, 40, 256, device)
    batch = torch.randint(0, 2, (40, 1), generator=gen).to(device).float()
    return extractor(feats, torch.cat([batch, boxes], dim=1))


def _mask_targets(gen, device):
    from mmdet.structures.mask import BitmapMasks
    masks = (torch.rand(5, 48, 64, generator=gen) > 0.5).numpy().astype(np.uint8)
    boxes = _boxes(gen, 12, 48, device)
    inds = torch.randint(0, 5, (12,), generator=gen).numpy()
    out = BitmapMasks(masks, 48, 64).crop_and_resize(
        boxes, (28, 28), inds, device=device, binarize=False)
    return torch.from_numpy(out.masks)


def _rpn_nms(gen, device):
    from mmcv.ops import batched_nms
    boxes = _boxes(gen, 600, 200, device)
    scores = torch.rand(600, generator=gen).to(device)
    idxs = torch.randint(0, 20, (600,), generator=gen).to(device)
    dets, keep = batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=0.7))
    return dets, keep


def _test_nms(gen, device):
    from mmcv.ops import nms
    boxes = _boxes(gen, 300, 200, device)
    scores = torch.rand(300, generator=gen).to(device)
    return nms(boxes, scores, iou_threshold=0.5)


CHECKS = [
    ('RoIAlign', 'SingleRoIExtractor (box head, 7x7)', lambda g, d: _roi_extractor(g, d, 7)),
    ('RoIAlign', 'SingleRoIExtractor (mask head, 14x14)', lambda g, d: _roi_extractor(g, d, 14)),
    ('roi_align', 'BitmapMasks.crop_and_resize (mask targets)', _mask_targets),
    ('batched_nms', 'batched_nms (RPN proposals, 20 classes)', _rpn_nms),
    ('nms', 'nms (test-time detections)', _test_nms),
]


def _max_diff(a, b):
    """Largest absolute difference of two (nested tuples of) tensors; inf if shapes differ."""
    if isinstance(a, (tuple, list)):
        return max(_max_diff(x, y) for x, y in zip(a, b))
    a, b = a.detach().cpu(), b.detach().cpu()
    if a.shape != b.shape:
        return float('inf')
    if a.numel() == 0:
        return 0.0
    return (a.double() - b.double()).abs().max().item()


def _fix_for(error, device):
    msg = str(error)
    if 'no kernel image' in msg:
        cap = '.'.join(map(str, torch.cuda.get_device_capability(torch.device(device))))
        return FIX_NO_KERNEL_IMAGE.format(cap=cap)
    if 'not found' in msg or 'not compiled with' in msg.lower() or 'MMCV_WITH_CUDA' in msg:
        return FIX_NO_CUDA_KERNEL
    return 'see the error above'


def run_checks(device, seed=0):
    """One row per op: dict(op, entry, device, max_abs_diff, ok, error, fix)."""
    try:
        import hat_mm  # noqa: F401  (hat_mm routes ops it serves when imported)
    except ImportError as e:
        print(f'[check_env] warning: hat_mm not importable ({e})', file=sys.stderr)
    rows = []
    for op, entry, fn in CHECKS:
        row = dict(op=op, entry=entry, device=str(device), max_abs_diff=None, ok=False,
                   error='', fix='')
        try:
            ref = fn(torch.Generator().manual_seed(seed), 'cpu')
            out = fn(torch.Generator().manual_seed(seed), device)
            if torch.device(device).type == 'cuda':
                torch.cuda.synchronize()
            row['max_abs_diff'] = _max_diff(out, ref)
            row['ok'] = row['max_abs_diff'] <= ATOL
            if not row['ok']:
                row['error'] = f'differs from the CPU result by {row["max_abs_diff"]:.3g}'
                row['fix'] = 'report this with the table above'
        except Exception as e:  # noqa: BLE001  (every failure is a row with its fix)
            row['error'] = f'{type(e).__name__}: {e}'.splitlines()[0]
            row['fix'] = _fix_for(e, device)
        rows.append(row)
    return rows


def format_table(rows):
    lines = ['| op | called through | device | max abs diff vs CPU | result |',
             '|---|---|---|---|---|']
    for r in rows:
        diff = '' if r['max_abs_diff'] is None else f'{r["max_abs_diff"]:.2e}'
        lines.append(f'| {r["op"]} | {r["entry"]} | {r["device"]} | {diff} | '
                     f'{"pass" if r["ok"] else "FAIL"} |')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    rows = run_checks(args.device, args.seed)
    print(format_table(rows))
    if args.device == 'cpu':
        print('(no GPU visible: the ops ran on CPU, the reference is the same CPU call)')
    failed = [r for r in rows if not r['ok']]
    for r in failed:
        print(f'[check_env] FAIL {r["op"]} on {r["device"]}: {r["error"]}\n  {r["fix"]}',
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Time a plain training step, an official-style HAT step and hat-mm's HAT step, in one
process, on the same model and inputs.

    python tools/analysis/benchmark_hat.py CONFIG [--batch-size 128] [--amp bf16|fp16]
                                                  [--device cuda|cpu] [--iters 20]
                                                  [--cfg-options model.fused_window_attention=True]

- plain:    one forward + backward + optimizer step of the classifier's own loss;
- official: SPEC section 1 written as a plain PyTorch loop in this file, with the clean
            forward kept in the autograd graph as the official code does;
- hat-mm:   ``model.train_step`` with the config's optim wrapper (the runner's path).

Inputs are random tensors of the model's input size (already normalised: the data pipeline
is not timed). Timing: warm-up iterations, then the median of ``--iters`` synchronised
steps. Peak memory is reported on CUDA.
"""
import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--batch-size', type=int, default=None,
                   help='default: 128 on CUDA, 16 on CPU')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--amp', choices=['fp16', 'bf16'], default=None)
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--img-size', type=int, default=None,
                   help='default: the backbone img_size, else 224')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config entries, e.g. model.fused_window_attention=True')
    p.add_argument('--steps', default='plain,official,hat-mm',
                   help='comma-separated subset of plain,official,hat-mm')
    return p.parse_args(argv)


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def official_style_step(model, optimizer, scaler, x, y, K, eps, alpha, w_kl, w_ce, dtype):
    """SPEC section 1 as the official code writes it (clean forward kept in the graph)."""
    device_type = x.device.type
    autocast = torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)
    with autocast:
        z_c = model(x, mode='tensor')
    p_c = F.softmax(z_c.float(), -1).detach()
    delta = torch.zeros_like(x)
    for k in range(K):
        delta.requires_grad_(True)
        with autocast:
            z = model(x + delta, mode='tensor').float()
        ce = -(y * F.log_softmax(z, -1)).sum(-1).mean()
        log_p = F.log_softmax(z, -1)
        kl = 0.5 * (F.kl_div(log_p, p_c, reduction='batchmean')
                    + (log_p.exp() * (log_p - torch.log(p_c + 1e-12))).sum(-1).mean())
        loss = ce + w_kl * kl if k == 0 else (w_ce * ce + w_kl * kl) / (K - 1)
        scaler.scale(loss).backward()
        delta = (delta.detach() + alpha * delta.grad.sign()).clamp(-eps, eps)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def time_fn(fn, device, warmup, iters):
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith('cuda') else None
    return statistics.median(times), peak


def main(argv=None):
    args = parse_args(argv)
    import hat_mm  # noqa: F401
    from hat_mm.engine import apply_hat
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    cfg = apply_hat(cfg)
    device = args.device
    bs = args.batch_size or (128 if device.startswith('cuda') else 16)
    img = args.img_size or cfg.model.backbone.get('img_size', 224)
    num_classes = cfg.model.head.num_classes
    dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16, None: None}[args.amp]

    model = MODELS.build(cfg.model).to(device).train()
    model.set_hat_phase(True)
    hat = model.hat
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if args.amp:
        wrapper_cfg.update(type='AmpOptimWrapper', dtype='float16' if args.amp == 'fp16'
                           else 'bfloat16', loss_scale='dynamic')
    optim_wrapper = build_optim_wrapper(model, wrapper_cfg)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(bs, 3, img, img, generator=g).to(device)
    labels = torch.randint(0, num_classes, (bs, ), generator=g)
    y = F.one_hot(labels, num_classes).float().to(device)
    samples = [DataSample().set_gt_label(int(i)).set_gt_score(y[j].cpu()).to(device)
               for j, i in enumerate(labels)]

    class _Identity(torch.nn.Module):  # inputs are already "preprocessed"
        def forward(self, data, training=False):
            return data

    model.data_preprocessor = _Identity()
    batch = dict(inputs=x, data_samples=samples)

    def plain():
        with optim_wrapper.optim_context(model):
            losses = model.head._get_loss(model(x, mode='tensor').float(), samples) \
                if hasattr(model, 'head') else model._get_loss(model(x, mode='tensor'),
                                                                samples)
        optim_wrapper.update_params(losses['loss'])

    scaler = torch.amp.GradScaler(device.split(':')[0], enabled=args.amp == 'fp16')
    optimizer = optim_wrapper.optimizer

    def official():
        official_style_step(model, optimizer, scaler, x, y, hat.adv_iters, hat.adv_eps,
                            hat.adv_lr, hat.adv_kl_weight, hat.adv_ce_weight, dtype)

    def hat_mm_step():
        model.train_step(batch, optim_wrapper)

    steps = {'plain': plain, 'official': official, 'hat-mm': hat_mm_step}
    wanted = [s for s in args.steps.split(',') if s]
    print(f'{args.config}: batch {bs}, {img}x{img}, device {device}, amp {args.amp}, '
          f'K={hat.adv_iters}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M '
          'params')
    results = {}
    for name in wanted:
        sec, peak = time_fn(steps[name], device, args.warmup, args.iters)
        results[name] = sec
        mem = f'  peak {peak:.2f} GiB' if peak is not None else ''
        print(f'{name:>9}: {sec * 1e3:9.1f} ms/step  {bs / sec:9.1f} img/s{mem}')
    if 'plain' in results:
        for name in ('official', 'hat-mm'):
            if name in results:
                print(f'{name} / plain time: {results[name] / results["plain"]:.2f}x')
    if 'official' in results and 'hat-mm' in results:
        print(f'hat-mm speed vs official-style: {results["official"] / results["hat-mm"]:.2f}x')
    return results


if __name__ == '__main__':
    main()

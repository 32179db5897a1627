#!/usr/bin/env python
"""Time a plain training step, an official-style HAT step and hat-mm's HAT step, in one
process, on the same weights and inputs.

    python tools/analysis/benchmark_hat.py CONFIG [--batch-size 128] [--amp bf16|fp16]
        [--eager] [--compile] [--channels-last]
        [--cfg-options model.fused_window_attention=True]
        [--device cuda|cpu] [--iters 20] [--peak-tflops 790] [--profile DIR]

- plain:    one forward + backward + optimizer step of the classifier's own loss;
- official: docs/hat_update.md written as a plain PyTorch loop in this file, with the clean
            forward kept in the autograd graph as the official code does (the same update
            as hat-mm's, tested);
- hat-mm:   ``model.train_step`` with the config's optim wrapper (the runner's path).

plain and official run the stock model (eager, mmpretrain's own modules); hat-mm runs the
model as the config builds it, with its fast paths (``model.fused_window_attention``,
``model.compile`` / ``--compile``, ``model.channels_last`` / ``--channels-last``); ``--eager``
turns the config's own fast paths off first (the paper configs compile on CUDA), so that
``--cfg-options`` and the flags measure one option at a time. The two models start from the
same weights and are timed one after the other, so each step's peak memory is its own.

Every step uses the model's own training loss: a distillation model (DeiT-B distilled) runs
its teacher, built from the config with random weights (no checkpoint needed), on each
``x + delta_k``; VOLO gets token-label targets (class and dense). Inputs are random tensors of
the model's input size (already normalised: the data pipeline is not timed).

Timing: warm-up iterations, then the median of ``--iters`` synchronised steps. Model-FLOP
utilisation counts the forward FLOPs of one image (torch's FLOP counter) times 3 for a plain
step and times 1 + 3K for a HAT step (a no-grad clean forward plus K forward+backward
passes), plus one teacher forward per loss (1 in a plain step, K in a HAT step), against the
dense matmul throughput measured in the step's dtype on the same device (``--peak-tflops``
to give another peak).

With compile on (``--compile`` or the config's ``model.compile``) it also says what dynamo
did in the timed steps: graphs compiled, graph breaks, recompile-limit hits (code it gave up
on runs eager, silently), and graphs compiled in two more steps (there should be none).

``--profile DIR`` then runs a few more hat-mm steps under ``torch.profiler`` and prints where
the time goes: the top operators by self time on the device (CPU time on CPU), the kernel
launches, scalar reads (``.item()``) and GPU synchronisations (``cudaStreamSynchronize``, ...)
per step, and the share of the timed (unprofiled) step the GPU is idle (launch gaps and host
waits; the profiler's own overhead would inflate them); the device time by kind of kernel
(matmul, attention, normalisation, copies and casts, ...; on CPU the operators' self time),
with the rate of the matmul and attention kernels (the step's model FLOPs over their time);
and which kernel each ``scaled_dot_product_attention`` call ran (``math`` is the unfused
path, in fp32 under autocast: a call that should be fused and lands there is a slow path; in
a compiled graph that path shows as matmuls and a softmax instead).
DIR gets the Chrome trace (``trace.json``, for chrome://tracing or Perfetto) and
``profile.json``.
"""
import argparse
import copy
import gc
import json
import logging
import os.path as osp
import platform
import statistics
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

FAST_PATH_KEYS = ('fused_window_attention', 'compile', 'channels_last')


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
    p.add_argument('--eager', action='store_true',
                   help="the config's model fast paths off (%s) before --cfg-options and the "
                   'flags below' % ', '.join(FAST_PATH_KEYS))
    p.add_argument('--compile', action='store_true',
                   help='torch.compile the hat-mm model (model.compile=True)')
    p.add_argument('--compile-mode', default=None,
                   help='torch.compile mode with --compile, e.g. max-autotune-no-cudagraphs')
    p.add_argument('--channels-last', action='store_true',
                   help='channels-last weights and inputs for the hat-mm model')
    p.add_argument('--peak-tflops', type=float, default=None,
                   help='peak for the model-FLOP utilisation (default: measured matmul)')
    p.add_argument('--out', default=None, help='also write the results to this JSON file')
    p.add_argument('--profile', default=None, metavar='DIR',
                   help='profile hat-mm steps after timing them; trace and summary into DIR')
    p.add_argument('--profile-steps', type=int, default=3)
    args = p.parse_args(argv)
    for flag in ('batch_size', 'iters', 'img_size', 'profile_steps'):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} {value}: expected 1 or more")
    if args.warmup < 0:
        p.error(f'--warmup {args.warmup}: expected 0 or more')
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        p.error(f'--peak-tflops {args.peak_tflops}: expected a positive number')
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        p.error(f'--device {args.device}: {str(err).splitlines()[0]} (e.g. cuda, cuda:1, cpu)')
    if device.type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--device {args.device}: no GPU is visible to torch here; --device cpu')
    return args


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def official_style_step(model, optimizer, scaler, x, loss_fn, logits_of, K, eps, alpha, w_kl,
                        w_ce, dtype, clip_grad=None):
    """docs/hat_update.md as the official code writes it (clean forward kept in the graph).
    ``loss_fn(output, inputs)`` is ``CE_k`` (the model's own loss: a distillation teacher or
    the token-label targets included), ``logits_of(output)`` the logits the KL compares;
    ``clip_grad`` (max norm) clips the accumulated gradient as timm's loss scaler does."""
    device_type = x.device.type
    autocast = torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)
    with autocast:
        z_c = logits_of(model(x, mode='tensor'))
    p_c = F.softmax(z_c.float(), -1).detach()
    delta = torch.zeros_like(x)
    for k in range(K):
        delta.requires_grad_(True)
        x_adv = x + delta
        with autocast:
            out = model(x_adv, mode='tensor')
        ce = loss_fn(out, x_adv)
        log_p = F.log_softmax(logits_of(out).float(), -1)
        kl = 0.5 * (F.kl_div(log_p, p_c, reduction='batchmean')
                    + (log_p.exp() * (log_p - torch.log(p_c + 1e-12))).sum(-1).mean())
        loss = ce + w_kl * kl if k == 0 else (w_ce * ce + w_kl * kl) / (K - 1)
        scaler.scale(loss).backward()
        delta = (delta.detach() + alpha * delta.grad.sign()).clamp(-eps, eps)
    if clip_grad is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
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


# Runtime calls that make the host wait for the GPU (a .item() of a CUDA tensor is one).
HOST_SYNC_EVENTS = ('cudaStreamSynchronize', 'cudaDeviceSynchronize', 'cudaEventSynchronize',
                    'cudaMemcpy')
KERNEL_LAUNCH_EVENTS = ('cudaLaunchKernel', 'cudaLaunchKernelExC', 'cuLaunchKernel',
                        'cuLaunchKernelEx', 'cudaGraphLaunch')


# Kinds of device time, by kernel name on CUDA (operator name on CPU), lower case; the first
# kind with a matching part wins. cuBLAS / cuDNN / CUTLASS GEMM and convolution kernels and
# inductor's matmul templates (triton_tem_) count as matmul, inductor's other kernels
# (triton_poi_ / _red_ / _per_: elementwise, reductions and norms fused) as one kind.
KERNEL_KINDS = (
    ('attention', ('attention', 'fmha', 'flash', 'sdpa')),
    ('matmul', ('gemm', 'nvjet', 'xmma', 'cutlass', 'splitkreduce', 'triton_tem', 'aten::mm',
                'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'conv', 'im2col', 'col2im')),
    ('fused by inductor', ('triton_', )),
    ('normalisation', ('layer_norm', 'layernorm', 'gammabeta', 'batch_norm')),
    ('softmax', ('softmax', )),
    ('copy and cast', ('copy', 'cat', 'roll', 'memcpy', 'memset', 'nchwtonhwc', 'nhwctonchw')),
    ('optimizer and for-each', ('multi_tensor_apply', 'adam', 'foreach')),
    ('other elementwise and reductions', ('elementwise', 'reduce', 'aten::')),
)
# scaled_dot_product_attention's kernels, by the operator each one runs under
ATTENTION_BACKENDS = {
    'aten::_scaled_dot_product_flash_attention': 'flash',
    'aten::_scaled_dot_product_efficient_attention': 'efficient',
    'aten::_scaled_dot_product_cudnn_attention': 'cudnn',
    'aten::_scaled_dot_product_attention_math': 'math',
    'aten::_scaled_dot_product_flash_attention_for_cpu': 'flash (cpu)',
}


def kernel_kind(name: str) -> str:
    """The kind (``KERNEL_KINDS``) of a kernel or operator name; ``other`` if none."""
    name = name.lower()
    return next((kind for kind, parts in KERNEL_KINDS if any(p in name for p in parts)),
                'other')


def profile_steps(fn, device, steps, out_dir=None, top=15, timed_sec=None,
                  flops_per_step=None):
    """Run ``fn`` ``steps`` times under torch.profiler; return a summary (per step: wall time,
    device busy time, kernel launches, host syncs; the top operators by self time).

    The profiler slows the host (an H100 Swin-T HAT step: 441 ms profiled, 272 ms timed), so
    the gaps it shows between kernels are partly its own. With ``timed_sec`` (the step timed
    without the profiler) the idle share is the GPU's idle part of that step instead. With
    ``flops_per_step`` (the step's model FLOPs) it also gives the rate of the matmul and
    attention kernels: those FLOPs over those kernels' time."""
    import os
    from torch.profiler import ProfilerActivity, profile
    cuda = device.startswith('cuda')
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    fn()  # one step outside the profile: nothing lazy left to build
    _sync(device)
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        wall = (time.perf_counter() - t) / steps
    events = prof.key_averages()
    time_key = 'self_device_time_total' if cuda else 'self_cpu_time_total'

    def total(names, field='count'):
        return sum(getattr(e, field) for e in events if e.key in names)

    kernel_us = sum(e.self_device_time_total for e in events
                    if cuda and e.device_type == torch.autograd.DeviceType.CUDA)
    # device time by kind: the kernels on CUDA, the operators' self time on CPU
    by_kind = {}
    for e in events:
        us = (e.self_device_time_total if e.device_type == torch.autograd.DeviceType.CUDA
              else 0) if cuda else e.self_cpu_time_total
        if us > 0:
            kind = kernel_kind(e.key)
            by_kind[kind] = by_kind.get(kind, 0.0) + us / 1e3 / steps
    by_kind = dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))
    dense_ms = by_kind.get('matmul', 0.0) + by_kind.get('attention', 0.0)
    ranked = sorted(events, key=lambda e: getattr(e, time_key, 0), reverse=True)[:top]
    summary = dict(
        device=device, steps=steps, wall_ms_per_step=1e3 * wall,
        device_busy_ms_per_step=kernel_us / 1e3 / steps if cuda else None,
        timed_ms_per_step=None if timed_sec is None else 1e3 * timed_sec,
        device_idle_share=(max(0.0, 1 - kernel_us / 1e6 / steps / (timed_sec or wall))
                           if cuda else None),
        kernel_launches_per_step=total(KERNEL_LAUNCH_EVENTS) / steps,
        host_syncs_per_step={k: n / steps for k in HOST_SYNC_EVENTS
                             if (n := total((k, )))},
        # .item() and the like, on any device (the optimizer's CPU step counters included)
        scalar_reads_per_step=total(('aten::_local_scalar_dense', )) / steps,
        device_ms_by_kind_per_step=by_kind,
        matmul_attention_tflops=(flops_per_step / dense_ms / 1e9
                                 if flops_per_step and dense_ms else None),
        attention_calls_per_step={backend: n / steps for op, backend in
                                  ATTENTION_BACKENDS.items() if (n := total((op, )))},
        top_ops=[dict(name=e.key, calls_per_step=e.count / steps,
                      self_ms_per_step=getattr(e, time_key) / 1e3 / steps) for e in ranked])
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        prof.export_chrome_trace(os.path.join(out_dir, 'trace.json'))
        with open(os.path.join(out_dir, 'profile.json'), 'w') as f:
            json.dump(summary, f, indent=2)
    return summary


def print_profile(summary):
    busy = summary['device_busy_ms_per_step']
    timed = summary.get('timed_ms_per_step')
    print(f"profile of {summary['steps']} hat-mm steps: {summary['wall_ms_per_step']:.1f} ms "
          'per step' + (f' (timed without the profiler: {timed:.1f} ms)' if timed else '')
          + (f', device busy {busy:.1f} ms (idle {100 * summary["device_idle_share"]:.0f}% of '
             f'the {"timed" if timed else "profiled"} step)' if busy is not None else '')
          + f", {summary['kernel_launches_per_step']:.0f} kernel launches per step, "
          f"{summary['scalar_reads_per_step']:.0f} scalar reads (.item()) per step, GPU syncs "
          f"per step: {summary['host_syncs_per_step'] or 'none'}")
    by_kind = summary['device_ms_by_kind_per_step']
    all_ms = sum(by_kind.values()) or 1.0
    print(f"{'device' if busy is not None else 'CPU'} time by kind, per step: "
          + ', '.join(f'{kind} {ms:.1f} ms ({100 * ms / all_ms:.0f}%)'
                      for kind, ms in by_kind.items()))
    if summary.get('matmul_attention_tflops'):
        print(f"the step's model FLOPs over the matmul and attention time: "
              f"{summary['matmul_attention_tflops']:.3g} TFLOP/s")
    attention = summary['attention_calls_per_step']
    if attention:
        print('scaled_dot_product_attention calls per step, by kernel: '
              + ', '.join(f'{k} {n:g}' for k, n in attention.items())
              + (' (math: unfused, in fp32 under autocast)' if 'math' in attention else ''))
    for op in summary['top_ops']:
        print(f"  {op['self_ms_per_step']:9.2f} ms  {op['calls_per_step']:7.1f} calls  "
              f"{op['name'][:90]}")


def forward_flops_per_image(model, img, device) -> float:
    """FLOPs of one train-mode forward of one image (torch's FLOP counter, batch 2)."""
    # torch's table has the CUDA attention kernels, not the CPU one; count it the same way
    cpu_sdpa = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)
    mapping = {} if cpu_sdpa is None else {
        cpu_sdpa: lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.no_grad(), counter:
        model(torch.zeros(2, 3, img, img, device=device), mode='tensor')
    return counter.get_total_flops() / 2


def matmul_peak_tflops(device, dtype) -> float:
    """Dense matmul throughput in ``dtype`` on ``device`` (TFLOP/s), the MFU denominator."""
    n = 8192 if device.startswith('cuda') else 1024
    a = torch.randn(n, n, device=device, dtype=dtype or torch.float32)
    b = torch.randn(n, n, device=device, dtype=dtype or torch.float32)
    sec, _ = time_fn(lambda: a @ b, device, warmup=3, iters=10)
    return 2 * n**3 / sec / 1e12


@contextmanager
def counting_compiles():
    """What ``torch.compile`` did inside the block: graphs compiled, graph breaks, and the
    times dynamo hit its recompile limit (the code it gave up on then runs eager)."""
    from torch._dynamo.utils import counters
    hits = []

    class _LimitHits(logging.Handler):
        def emit(self, record):
            if 'hit config.' in record.getMessage():
                hits.append(record.getMessage().splitlines()[0])

    handler = _LimitHits(logging.WARNING)
    dynamo_log = logging.getLogger('torch._dynamo')
    dynamo_log.addHandler(handler)
    graphs = counters['stats']['unique_graphs']
    breaks = sum(counters['graph_break'].values())
    stats = {}
    try:
        yield stats
    finally:
        dynamo_log.removeHandler(handler)
        stats.update(graphs=counters['stats']['unique_graphs'] - graphs,
                     graph_breaks=sum(counters['graph_break'].values()) - breaks,
                     recompile_limit_hits=len(hits))


@contextmanager
def quiet_logs():
    """Hide mmengine's INFO lines (one per parameter group) while building."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_model(model_cfg, device, state_dict=None, teacher=None):
    with quiet_logs():
        model = MODELS.build(copy.deepcopy(model_cfg))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    model = model.to(device).train()
    model.set_hat_phase(True)
    if teacher is not None:
        model.set_teacher(teacher)

    class _Identity(torch.nn.Module):  # inputs are already "preprocessed"
        def forward(self, data, training=False):
            return data

    model.data_preprocessor = _Identity()
    return model


def build_teacher(model_cfg, device):
    """A distillation model's teacher, built from its config with random weights (the
    benchmark times its forwards and needs no checkpoint); None without distillation."""
    teacher_cfg = model_cfg.get('teacher') or {}
    loss_cfg = model_cfg.get('distillation_loss') or {}
    if not teacher_cfg or loss_cfg.get('distillation_type', 'none') == 'none':
        return None
    if teacher_cfg.get('model') is not None:
        cfg = teacher_cfg['model']
    else:
        cfg = Config.fromfile(teacher_cfg['config']).model
    with quiet_logs():
        teacher = MODELS.build(copy.deepcopy(cfg))
    return teacher.to(device)


def input_size(cfg, given=None) -> int:
    """The side of the training input: ``--img-size``, the backbone's ``img_size``, the
    config's ``img_size`` (timm models such as VOLO), else 224."""
    return (given or (cfg.model.get('backbone') or {}).get('img_size') or cfg.get('img_size')
            or 224)


def benchmark_samples(model, labels, y, img, generator):
    """Data samples as the config's data preprocessor leaves them for the training loss:
    ``gt_label`` and ``gt_score`` (soft targets), and for token labeling (VOLO) the
    class-token and dense ``[N, C]`` token targets."""
    samples = [DataSample().set_gt_label(int(i)).set_gt_score(y[j])
               for j, i in enumerate(labels)]
    if hasattr(model, 'token_label_losses'):
        grid_h, grid_w = model.token_grid(img, img)
        dense = torch.softmax(torch.randn(len(samples), grid_h * grid_w, y.shape[1],
                                          generator=generator), -1)
        for j, sample in enumerate(samples):
            sample.set_field(y[j], 'token_label_cls')
            sample.set_field(dense[j], 'token_label_dense')
    return samples


def main(argv=None):
    args = parse_args(argv)
    import hat_mm  # noqa: F401
    from hat_mm.engine import apply_hat
    from hat_mm.utils.tool_args import use_amp
    if not osp.isfile(args.config):
        raise SystemExit(f'config not found: {args.config} (a path like configs/hat_swin_t.py)')
    cfg = Config.fromfile(args.config)
    if args.eager:
        for key in FAST_PATH_KEYS:
            cfg.model.pop(key, None)
    cfg.merge_from_dict(args.cfg_options)
    cfg = apply_hat(cfg)
    if args.compile:
        cfg.model.compile = dict(mode=args.compile_mode) if args.compile_mode else True
    if args.channels_last:
        cfg.model.channels_last = True
    stock_cfg = copy.deepcopy(cfg.model)
    for key in FAST_PATH_KEYS:
        stock_cfg.pop(key, None)
    fast_paths = {k: cfg.model[k] for k in FAST_PATH_KEYS if cfg.model.get(k)}
    # the runner's env_cfg.cudnn_benchmark (the paper configs: on, as the official scripts),
    # for all three steps alike
    cudnn_benchmark = bool((cfg.get('env_cfg') or {}).get('cudnn_benchmark', False))
    torch.backends.cudnn.benchmark = cudnn_benchmark

    device = args.device
    bs = args.batch_size or (128 if device.startswith('cuda') else 16)
    img = input_size(cfg, args.img_size)
    dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16, None: None}[args.amp]
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if args.amp:  # as tools/train.py --amp: bf16 without loss scaling, as the official step
        use_amp(wrapper_cfg, args.amp)

    torch.manual_seed(0)
    teacher = build_teacher(cfg.model, device)
    model = build_model(stock_cfg, device, teacher=teacher)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    hat = model.hat
    flops_fwd = forward_flops_per_image(model, img, device)
    teacher_flops = 0.0 if teacher is None else forward_flops_per_image(teacher, img, device)
    peak_tflops = args.peak_tflops or matmul_peak_tflops(device, dtype)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(bs, 3, img, img, generator=g).to(device)
    with torch.no_grad():
        num_classes = model.hat_kl_logits(model(x[:2], mode='tensor')).shape[-1]
    labels = torch.randint(0, num_classes, (bs, ), generator=g)
    y = F.one_hot(labels, num_classes).float()
    samples = [s.to(device) for s in benchmark_samples(model, labels, y, img, g)]

    wanted = [s for s in args.steps.split(',') if s]
    unknown = sorted(set(wanted) - {'plain', 'official', 'hat-mm'})
    if unknown:
        raise SystemExit(f'--steps: unknown step(s) {unknown}; use plain, official, hat-mm')
    print(f'{args.config}: batch {bs}, {img}x{img}, device {device}, amp {args.amp}, '
          f'K={hat.adv_iters}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M '
          f'params, {flops_fwd / 1e9:.2f} GFLOP/image forward'
          + (f' + teacher {teacher_flops / 1e9:.2f}' if teacher is not None else '')
          + ', matmul peak '
          f'{peak_tflops:.1f} TFLOP/s{" (given)" if args.peak_tflops else " (measured)"}')
    optimizer = {k: wrapper_cfg.optimizer[k] for k in ('type', 'fused', 'foreach')
                 if k in wrapper_cfg.optimizer}
    print(f'hat-mm fast paths: {fast_paths or "none"}; optimizer {optimizer}; '
          f'cudnn.benchmark {cudnn_benchmark} (all steps)')
    # a teacher runs one forward per loss: once in a plain step, K times in a HAT step
    K = hat.adv_iters
    step_flops = {'plain': 3 * flops_fwd + teacher_flops,
                  'official': (1 + 3 * K) * flops_fwd + K * teacher_flops,
                  'hat-mm': (1 + 3 * K) * flops_fwd + K * teacher_flops}
    results = {}

    def record(name, fn):
        sec, peak = time_fn(fn, device, args.warmup, args.iters)
        mfu = bs / sec * step_flops[name] / (peak_tflops * 1e12)
        results[name] = dict(sec=sec, img_per_s=bs / sec, mfu=mfu, peak_gib=peak)
        mem = f'  peak {peak:6.2f} GiB' if peak is not None else ''
        print(f'{name:>9}: {sec * 1e3:9.1f} ms/step  {bs / sec:9.1f} img/s  '
              f'MFU {100 * mfu:5.1f}%{mem}', flush=True)

    # plain and official-style steps: the stock model
    with quiet_logs():
        optim_wrapper = build_optim_wrapper(model, copy.deepcopy(wrapper_cfg))
    optimizer['param_groups'] = len(optim_wrapper.optimizer.param_groups)  # the same in all
    print(f"optimizer: {optimizer['param_groups']} parameter groups "
          f"({wrapper_cfg.get('constructor', 'DefaultOptimWrapperConstructor')})")

    def context():
        return optim_wrapper.optim_context(model)

    def loss_fn(output, inputs):  # the model's own training loss (CE_k)
        return model.hat_classification_loss(output, samples, inputs, context)['loss']

    def plain():
        with context():
            output = model(x, mode='tensor')
        optim_wrapper.update_params(loss_fn(output, x))

    scaler = torch.amp.GradScaler(device.split(':')[0], enabled=args.amp == 'fp16')

    def official():
        official_style_step(model, optim_wrapper.optimizer, scaler, x, loss_fn,
                            model.hat_kl_logits, K, hat.adv_eps, hat.adv_lr,
                            hat.adv_kl_weight, hat.adv_ce_weight, dtype,
                            clip_grad=(wrapper_cfg.get('clip_grad') or {}).get('max_norm'))

    for name, fn in (('plain', plain), ('official', official)):
        if name in wanted:
            record(name, fn)
    del model, optim_wrapper, plain, official
    gc.collect()
    if device.startswith('cuda'):
        torch.cuda.empty_cache()

    # hat-mm: the model as configured, from the same weights
    if 'hat-mm' in wanted:
        model = build_model(cfg.model, device, state, teacher=teacher)
        with quiet_logs():
            optim_wrapper = build_optim_wrapper(model, copy.deepcopy(wrapper_cfg))
        if cfg.model.get('channels_last'):
            x = x.contiguous(memory_format=torch.channels_last)
        batch = dict(inputs=x, data_samples=samples)
        with counting_compiles() as compiled:
            record('hat-mm', lambda: model.train_step(batch, optim_wrapper))
        if model.hat_compiled:  # the K passes should compile once, in the first step
            with counting_compiles() as later:
                for _ in range(2):
                    model.train_step(batch, optim_wrapper)
            compiled['graphs_in_later_steps'] = later['graphs']
            results['hat-mm']['compile'] = compiled
            print('hat-mm compile: {graphs} graphs, {graph_breaks} graph breaks, '
                  '{recompile_limit_hits} recompile-limit hits, {graphs_in_later_steps} '
                  'graphs compiled in later steps'.format(**compiled), flush=True)
        if args.profile:
            results['hat-mm']['profile'] = profile_steps(
                lambda: model.train_step(batch, optim_wrapper), device, args.profile_steps,
                args.profile, timed_sec=results['hat-mm']['sec'],
                flops_per_step=bs * step_flops['hat-mm'])
            print_profile(results['hat-mm']['profile'])

    if 'plain' in results:
        for name in ('official', 'hat-mm'):
            if name in results:
                ratio = results[name]['sec'] / results['plain']['sec']
                print(f'{name} / plain time: {ratio:.2f}x')
    if 'official' in results and 'hat-mm' in results:
        off, ours = results['official'], results['hat-mm']
        print(f'hat-mm speed vs official-style: {off["sec"] / ours["sec"]:.2f}x')
        if off['peak_gib'] is not None:
            print(f'hat-mm peak memory vs official-style: '
                  f'{ours["peak_gib"] / off["peak_gib"]:.2f}x')
    if args.out:
        report = dict(config=args.config, device=device, device_name=_device_name(device),
                      amp=args.amp, batch_size=bs, img_size=img, adv_iters=hat.adv_iters,
                      fast_paths=fast_paths, optimizer=optimizer,
                      cudnn_benchmark=cudnn_benchmark,
                      forward_gflop_per_image=flops_fwd / 1e9,
                      teacher_gflop_per_image=teacher_flops / 1e9,
                      peak_tflops=peak_tflops, steps=results)
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2, default=str)
    return results


def _device_name(device):
    if device.startswith('cuda'):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


if __name__ == '__main__':
    main()

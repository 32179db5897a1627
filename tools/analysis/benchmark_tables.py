#!/usr/bin/env python
"""The performance tables: every speed option of hat-mm against the official-style step.

    python tools/analysis/benchmark_tables.py [--configs configs/hat_swin_t.py configs/hat_vit_b.py]
        [--amp bf16] [--batch-size 128] [--iters 20] [--out-dir work_dirs/benchmark]

For each config, ``benchmark_hat.py`` runs once with all three steps on the stock model and
hat-mm's step as configured, then once per speed option with hat-mm's step only:
``compile``, ``fused-adamw`` (``AdamW(fused=True)``), ``channels-last``, for Swin configs
``fused`` (``fused_window_attention``) and ``fused+compile``, and ``all`` of them together. Each run is
a separate process (its own compile caches and memory). The JSON of every run is kept in
``--out-dir``; the tables are printed in Markdown and written to ``tables.md`` there.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

from mmengine.config import Config

BENCHMARK = osp.join(osp.dirname(osp.abspath(__file__)), 'benchmark_hat.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--configs', nargs='+',
                   default=['configs/hat_swin_t.py', 'configs/hat_vit_b.py'])
    p.add_argument('--amp', choices=['fp16', 'bf16', 'none'], default='bf16')
    p.add_argument('--batch-size', type=int, default=None)
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--device', default=None)
    p.add_argument('--variants', default=None,
                   help='comma-separated subset of eager,compile,fused-adamw,channels-last,'
                   'fused,fused+compile,all (eager always runs)')
    p.add_argument('--out-dir', default='work_dirs/benchmark')
    return p.parse_args(argv)


def variants_for(config):
    """The speed options to measure, each as benchmark_hat.py arguments; ``all``: every one."""
    cfg = Config.fromfile(config)
    swin = 'Swin' in str(cfg.model.get('backbone', {}).get('type', ''))
    adamw = ['--cfg-options', 'optim_wrapper.optimizer.fused=True']
    variants = {'eager': [], 'compile': ['--compile'], 'fused-adamw': adamw,
                'channels-last': ['--channels-last']}
    every = ['--compile', '--channels-last'] + adamw
    if swin:
        fused = ['--cfg-options', 'model.fused_window_attention=True']
        variants.update({'fused': fused, 'fused+compile': ['--compile'] + fused})
        every += fused
    variants['all'] = every
    return variants


def run_variant(args, config, name, extra, out):
    cmd = [sys.executable, BENCHMARK, config, '--iters', str(args.iters),
           '--warmup', str(args.warmup), '--out', out] + extra
    if args.amp != 'none':
        cmd += ['--amp', args.amp]
    if args.batch_size:
        cmd += ['--batch-size', str(args.batch_size)]
    if args.device:
        cmd += ['--device', args.device]
    if name != 'eager':
        cmd += ['--steps', 'hat-mm']
    print('+', ' '.join(cmd), flush=True)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        print(res.stdout[-3000:])
        raise SystemExit(f'benchmark of {config} ({name}) failed with exit code '
                         f'{res.returncode}; its output is above.')
    with open(out) as f:
        return json.load(f)


def table(config, reports):
    first = reports['eager']
    official = first['steps'].get('official')
    lines = [f"### {osp.basename(config)}: {first['device_name']}, amp {first['amp']}, "
             f"batch {first['batch_size']}, {first['img_size']}x{first['img_size']}, "
             f"K={first['adv_iters']}, {first['forward_gflop_per_image']:.2f} GFLOP/image "
             f"forward, matmul peak {first['peak_tflops']:.3g} TFLOP/s",
             '',
             '| step | img/s | ms/step | MFU | peak memory (GiB) | speed vs official-style |',
             '|---|---|---|---|---|---|']

    def row(label, r):
        mem = '' if r.get('peak_gib') is None else f"{r['peak_gib']:.2f}"
        ratio = '' if official is None else f"{official['sec'] / r['sec']:.2f}x"
        lines.append(f"| {label} | {r['img_per_s']:.0f} | {1e3 * r['sec']:.1f} | "
                     f"{100 * r['mfu']:.1f}% | {mem} | {ratio} |")

    for step in ('plain', 'official'):
        if step in first['steps']:
            row({'plain': 'plain step', 'official': 'official-style HAT'}[step],
                first['steps'][step])
    for name, report in reports.items():
        if 'hat-mm' in report['steps']:
            row(f'hat-mm HAT ({name})', report['steps']['hat-mm'])
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    wanted = None if args.variants is None else args.variants.split(',')
    tables = []
    for config in args.configs:
        if not osp.isfile(config):
            raise SystemExit(f'config not found: {config}')
        reports = {}
        for name, extra in variants_for(config).items():
            if name != 'eager' and wanted is not None and name not in wanted:
                continue
            out = osp.join(args.out_dir,
                           f"{osp.splitext(osp.basename(config))[0]}_{name}.json")
            reports[name] = run_variant(args, config, name, extra, out)
        tables.append(table(config, reports))
    text = '\n\n'.join(tables) + '\n'
    print(text)
    with open(osp.join(args.out_dir, 'tables.md'), 'w') as f:
        f.write(text)
    return text


if __name__ == '__main__':
    main()

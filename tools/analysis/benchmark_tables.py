#!/usr/bin/env python
"""The performance tables: every speed option of hat-mm against the official-style step.

    python tools/analysis/benchmark_tables.py [--configs configs/hat_swin_t.py configs/hat_vit_b.py]
        [--amp bf16] [--batch-size 128] [--iters 20] [--out-dir work_dirs/benchmark]
        [--variants eager,compile,...] [--stop-after SECONDS] [--tabulate-only]

For each config, ``benchmark_hat.py`` runs once with all three steps on the stock model and
hat-mm's step eager (``eager``: the config's model fast paths off, ``benchmark_hat.py
--eager``), then once per speed option on top of that, with hat-mm's step only:
``compile``, ``autotune`` (``torch.compile`` mode ``max-autotune-no-cudagraphs``: inductor
tries several kernels for each matmul and keeps the fastest; its first step takes longer; CUDA
graphs are not a variant: ``hat_mm.models.compile`` says why), ``fused-adamw``
(``AdamW(fused=True)``; ``foreach-adamw``, ``fused=False``, for configs that have it on, as
the paper configs do), ``channels-last``, for Swin configs ``fused``
(``fused_window_attention``) and ``fused+compile``, and ``all`` of them
together (``compile`` in its default mode), and ``defaults``: the config as it is (the paper
configs: ``compile`` on CUDA, fused AdamW, one optimizer group per setting), with for the paper
configs ``per-param-groups``: the defaults with mmengine's one optimizer group per parameter.
Each run is a separate process (its own compile
caches and memory). The JSON and the output of every run are kept in ``--out-dir``; the tables
are printed in Markdown and written to ``tables.md`` there, again after every run, so an
interrupted job keeps what it measured. A run that fails
is a row saying so (the others go on; the exit status is then 1). ``--stop-after SECONDS``
starts no run after that many seconds (for a time-limited job): the rows not run say so.
``--tabulate-only`` runs nothing and makes the tables of the configs from the JSON already in
``--out-dir``. Runs can be made piecewise in one folder (one variant at a time, as
``gpu_measurements.py`` does): with ``--variants``, the variants not listed whose JSON is
already in ``--out-dir`` are tabled as they are, and a JSON of other settings than the
baseline's (GPU, amp, batch or image size) is a row saying so.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

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
                   help='comma-separated subset of eager,compile,autotune,fused-adamw (or '
                   'foreach-adamw),channels-last,fused,fused+compile,all,defaults,'
                   'per-param-groups; eager (the '
                   'baseline, all three steps) runs too unless it is not listed and its JSON '
                   'from an earlier run is in --out-dir')
    p.add_argument('--out-dir', default='work_dirs/benchmark')
    p.add_argument('--stop-after', type=float, default=None, metavar='SECONDS',
                   help='start no run after this many seconds (the rows say "not run")')
    p.add_argument('--tabulate-only', action='store_true',
                   help='run nothing: tables from the JSON already in --out-dir')
    return p.parse_args(argv)


def variants_for(config):
    """The speed options to measure, each as benchmark_hat.py arguments; ``all``: every one."""
    cfg = Config.fromfile(config)
    swin = 'Swin' in str(cfg.model.get('backbone', {}).get('type', ''))
    adamw = ['--cfg-options', 'optim_wrapper.optimizer.fused=True']
    autotune = ['--compile', '--compile-mode', 'max-autotune-no-cudagraphs']
    variants = {'eager': [], 'compile': ['--compile'], 'autotune': autotune,
                'channels-last': ['--channels-last']}
    if cfg.optim_wrapper.get('optimizer', {}).get('fused'):  # the paper configs: the other way
        variants['foreach-adamw'] = ['--cfg-options', 'optim_wrapper.optimizer.fused=False']
    else:
        variants['fused-adamw'] = adamw
    every = ['--compile', '--channels-last'] + adamw
    if swin:
        fused = ['--cfg-options', 'model.fused_window_attention=True']
        variants.update({'fused': fused, 'fused+compile': ['--compile'] + fused})
        every += fused
    variants['all'] = every
    variants = {name: ['--eager'] + extra for name, extra in variants.items()}
    variants['defaults'] = []  # the config as it is
    if cfg.optim_wrapper.get('constructor') == 'MergedGroupsOptimWrapperConstructor':
        # the defaults with mmengine's one optimizer group per parameter (the optimizer's
        # kernels count most in the short compiled step)
        variants['per-param-groups'] = [
            '--cfg-options', 'optim_wrapper.constructor=DefaultOptimWrapperConstructor']
    return variants


def run_variant(args, config, name, extra, out):
    """One benchmark_hat.py process; its JSON report, or ``dict(failed=why)``."""
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
    if osp.exists(out):
        os.remove(out)
    start = time.time()
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = osp.splitext(out)[0] + '.log'
    with open(log, 'w') as f:
        f.write(res.stdout)
    if res.returncode != 0 or not osp.isfile(out):
        print(res.stdout[-3000:])
        print(f'benchmark of {config} ({name}) failed with exit code {res.returncode}; its '
              f'output is above and in {log}', flush=True)
        return dict(failed=f'failed (exit {res.returncode}), see {osp.basename(log)}')
    with open(out) as f:
        report = json.load(f)
    print(f'  {name}: done in {time.time() - start:.0f} s', flush=True)
    return report


def table(config, reports):
    first = reports.get('eager', {})
    if 'steps' not in first:  # the baseline run itself failed or did not run
        lines = [f'### {osp.basename(config)}', '', '| step | result |', '|---|---|']
        lines += [f"| hat-mm HAT ({name}) | {r.get('failed', 'done')} |"
                  for name, r in reports.items()]
        return '\n'.join(lines)
    official = first['steps'].get('official')
    teacher = first.get('teacher_gflop_per_image') or 0
    lines = [f"### {osp.basename(config)}: {first['device_name']}, amp {first['amp']}, "
             f"batch {first['batch_size']}, {first['img_size']}x{first['img_size']}, "
             f"K={first['adv_iters']}, {first['forward_gflop_per_image']:.2f} GFLOP/image "
             'forward' + (f' (teacher: {teacher:.2f} more)' if teacher else '')
             + f", matmul peak {first['peak_tflops']:.3g} TFLOP/s",
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
    setting = ('device_name', 'amp', 'batch_size', 'img_size')
    for name, report in reports.items():
        if 'steps' in report and any(report.get(k) != first.get(k) for k in setting):
            lines.append(f'| hat-mm HAT ({name}) | other settings than the baseline: '
                         'measure it again | | | | |')  # a stale JSON in --out-dir
        elif 'hat-mm' in report.get('steps', {}):
            row(f'hat-mm HAT ({name})', report['steps']['hat-mm'])
        elif 'failed' in report:
            lines.append(f"| hat-mm HAT ({name}) | {report['failed']} | | | | |")
    notes = [compile_note(name, report['steps']['hat-mm']['compile'])
             for name, report in reports.items()
             if 'compile' in report.get('steps', {}).get('hat-mm', {})]
    if notes:
        lines += ['', 'torch.compile: ' + '; '.join(notes) + '.']
    return '\n'.join(lines)


def compile_note(name, stats):
    """``name: N graphs`` and what went wrong: graph breaks, code dynamo gave up on (left
    eager at its recompile limit), graphs compiled after the first step."""
    problems = [f'{stats[key]} {what}' for key, what in (
        ('graph_breaks', 'graph breaks'),
        ('recompile_limit_hits', 'recompile-limit hits (that code ran eager)'),
        ('graphs_in_later_steps', 'graphs compiled after the first step')) if stats.get(key)]
    return f"{name}: {stats['graphs']} graphs, " + (
        ', '.join(problems) if problems else 'no graph break or recompile')


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    wanted = None if args.variants is None else args.variants.split(',')
    for config in args.configs:
        if not osp.isfile(config):
            raise SystemExit(f'config not found: {config}')
    variants = {config: variants_for(config) for config in args.configs}
    known = {name for v in variants.values() for name in v}
    if wanted is not None and set(wanted) - known:
        raise SystemExit(f'--variants: unknown {sorted(set(wanted) - known)}; for these '
                         f'configs: {",".join(sorted(known))}')
    start = time.time()
    done = {}  # config -> {variant: report}

    def write_tables():
        text = '\n\n'.join(table(c, r) for c, r in done.items()) + '\n'
        with open(osp.join(args.out_dir, 'tables.md'), 'w') as f:
            f.write(text)
        return text

    for config in args.configs:
        reports = done.setdefault(config, {})
        for name, extra in variants[config].items():
            out = osp.join(args.out_dir,
                           f"{osp.splitext(osp.basename(config))[0]}_{name}.json")
            earlier_run = wanted is not None and name not in wanted and osp.isfile(out)
            if args.tabulate_only or earlier_run:  # tabled, not run again
                if osp.isfile(out):
                    with open(out) as f:
                        reports[name] = json.load(f)
                continue
            if name != 'eager' and wanted is not None and name not in wanted:
                continue
            if args.stop_after is not None and time.time() - start > args.stop_after:
                reports[name] = dict(failed=f'not run (--stop-after {args.stop_after:g} s)')
                continue
            reports[name] = run_variant(args, config, name, extra, out)
            write_tables()
    text = write_tables()
    print(text)
    failed = [f'{osp.basename(c)} ({n})' for c, r in done.items() for n, rep in r.items()
              if rep.get('failed', '').startswith('failed')]
    if failed:
        print(f'failed runs: {", ".join(failed)}')
    return text, not failed


if __name__ == '__main__':
    sys.exit(0 if main()[1] else 1)

#!/usr/bin/env python
"""Every GPU measurement behind the README's performance tables, in one command, the most
telling first, within a time budget:

    python tools/analysis/gpu_measurements.py [--out-dir work_dirs/gpu_measurements]
        [--budget SECONDS] [--only PATTERN ...] [--precompile N] [--data DIR] [--list]

The measurements are the other analysis tools, one process each (their options are in the
README's *Tools* table), of these kinds; ``--list`` gives their order, what decides a goal or
a default first (the defaults of Swin-T and ViT-B, the profiles of their compiled steps, the
end-to-end rate, pinned memory, VOLO-D1 and DeiT-B distilled eager and compiled, matmul
autotuning), the rest after:

- ``bench/<amp>/<model>/<variant>``: ``benchmark_tables.py --variants <variant>`` for one
  config (its eager baseline, with the plain and official-style steps, runs with the first
  variant), into ``bench_<amp>/``; the tables of every model measured so far are rewritten in
  ``bench_<amp>/tables.md`` after each run;
- ``throughput/swin_t/<variant>``: ``train_throughput.py`` (``tools/train.py`` end to end on
  generated JPEG data, 12 workers) with the config as it is (``default``), with pinned memory
  and non-blocking copies (``pinned``), with mmengine's list-of-images collate
  (``pseudo_collate``), and ``--breakdown``; against the benchmark's step when its JSON is
  there;
- ``profile/<model>``: ``benchmark_hat.py --profile`` of the compiled default step;
- ``gpu_check``: ``tools/gpu_check.sh --jobs 6`` (every task on the GPU, pass/fail);
- ``loader/swin_t``: ``train_throughput.py --loader-only``, images per second per worker.

An item starts only when its estimated time (``--list`` shows it) fits in what is left of
``--budget``; a running item is stopped when the budget ends. Each item's output goes to
``logs/<item>.log`` and its files to its folder under ``--out-dir``; ``measurements.md``
and ``measurements.json`` there (the GPU, torch, the commit, and per item its command,
status and seconds) are rewritten after every item, so a job stopped from outside keeps what
it measured. ``--precompile N`` first compiles the steps of the first N chosen items that
compile (``bench/...`` items whose variant compiles), all at once, one process each: the timed
runs then find their graphs in inductor's caches on this machine (FX graphs and AOTAutograd)
and compile in about half the time, and so do the ``profile`` and ``throughput`` items of a
model whose ``defaults`` were compiled; their estimates are halved. On an H200 three steps
compiled side by side in 202 s, where one at a time they take about 3, 1 and 3 minutes.
``--only`` takes shell patterns of item names (``'bench/bf16/*'``). The exit
status is 1 when an item failed. Generated training images go to ``--data`` (default
``data/synthetic_imagenet``), outside ``--out-dir``.
"""
import argparse
import fnmatch
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = dict(swin_t='configs/hat_swin_t.py', vit_b='configs/hat_vit_b.py',
               volo_d1='configs/hat_volo_d1_224.py',
               deit_b_distilled='configs/hat_deit_b_distilled.py')
PINNED = ['train_dataloader.pin_memory=True', 'data_preprocessor.non_blocking=True']
PSEUDO = ['train_dataloader.collate_fn.type=pseudo_collate']


def bench(amp, model, variant, estimate):
    return (f'bench/{amp}/{model}/{variant}', estimate, [
        'tools/analysis/benchmark_tables.py', '--configs', CONFIGS[model], '--amp', amp,
        '--variants', variant, '--out-dir', '{out}/bench_' + amp])


def throughput(variant, estimate, extra=(), options=()):
    argv = ['tools/analysis/train_throughput.py', CONFIGS['swin_t'], '--amp', 'bf16',
            '--workers', '12', '--iters', '40', '--skip', '10', '--data', '{data}',
            '--work-dir', '{out}/throughput/swin_t/' + variant, '--step-json',
            '{out}/bench_bf16/hat_swin_t_defaults.json?', *extra]
    return (f'throughput/swin_t/{variant}', estimate,
            argv + (['--cfg-options', *options] if options else []))


def profile(model, estimate):
    return (f'profile/{model}', estimate, [
        'tools/analysis/benchmark_hat.py', CONFIGS[model], '--amp', 'bf16', '--steps',
        'hat-mm', '--iters', '5', '--warmup', '3', '--profile', '{out}/profile/' + model,
        '--profile-steps', '2', '--out', f'{{out}}/profile/{model}.json'])


# (name, estimated seconds on one H100, command); a '?' ending an argument drops it and the
# option before it when that file is not there when the item starts
ITEMS = [
    bench('bf16', 'swin_t', 'defaults', 240),  # Swin-T's first compile: about 3 minutes
    bench('bf16', 'vit_b', 'defaults', 150),
    profile('swin_t', 150),  # what holds the compiled steps short of their goals
    profile('vit_b', 120),
    throughput('default', 200),  # compiles again (inductor's caches make it shorter)
    throughput('pinned', 120, options=PINNED),
    throughput('breakdown', 120, extra=['--breakdown']),
    # VOLO-D1 and DeiT-B distilled train eager by default (compile not yet measured on a GPU):
    # `compile` runs their eager baseline (= their defaults) and the compiled step
    bench('bf16', 'volo_d1', 'compile', 420),
    bench('bf16', 'deit_b_distilled', 'compile', 380),
    bench('bf16', 'vit_b', 'autotune', 300),
    bench('bf16', 'swin_t', 'autotune', 400),
    bench('bf16', 'swin_t', 'per-param-groups', 120),
    bench('bf16', 'vit_b', 'per-param-groups', 90),
    bench('bf16', 'swin_t', 'fused+compile', 220),  # H200: 13% slower than the default
    throughput('pseudo_collate', 120, options=PSEUDO),
    ('gpu_check', 200, ['tools/analysis/gpu_check.py', '--jobs', '6', '--row-timeout', '170',
                        '--work-dir', '{out}/gpu_check']),
    bench('fp16', 'swin_t', 'defaults', 240),
    bench('fp16', 'vit_b', 'defaults', 150),
    bench('bf16', 'swin_t', 'fused', 60),
    bench('bf16', 'swin_t', 'compile', 120),
    bench('bf16', 'vit_b', 'compile', 90),
    bench('bf16', 'swin_t', 'foreach-adamw', 60),
    bench('bf16', 'vit_b', 'foreach-adamw', 60),
    bench('bf16', 'swin_t', 'channels-last', 60),
    bench('bf16', 'vit_b', 'channels-last', 60),
    bench('bf16', 'swin_t', 'all', 240),
    bench('bf16', 'vit_b', 'all', 150),
    ('loader/swin_t', 60, ['tools/analysis/train_throughput.py', CONFIGS['swin_t'],
                           '--loader-only', '--workers', '1', '4', '8', '--iters', '20',
                           '--skip', '4', '--data', '{data}',
                           '--work-dir', '{out}/loader/swin_t']),
]


# An item whose compiled graphs are in the caches already: this share of its estimate (an
# H200, 2026-11-27: 99 of 240 s, 85 of 150, 100 of 220, 82 of 200).
WARM_SHARE = 0.5
PRECOMPILE_SECONDS = 360  # at most, for all of them together


def precompile_command(item, out_dir):
    """The ``benchmark_hat.py`` run that compiles what the item compiles (the same config,
    amp and options, one step timed after two), or None if it compiles nothing."""
    name = item[0]
    if not name.startswith('bench/'):
        return None
    from mmengine.config import Config

    from tools.analysis.benchmark_tables import variants_for
    _, amp, model, variant = name.split('/', 3)
    extra = variants_for(CONFIGS[model])[variant]
    if '--eager' in extra and '--compile' not in extra:
        return None
    if '--eager' not in extra and not Config.fromfile(CONFIGS[model]).model.get('compile'):
        return None
    out = osp.join(out_dir, 'precompile', name.replace('/', '_') + '.json')
    return [sys.executable, 'tools/analysis/benchmark_hat.py', CONFIGS[model], '--amp', amp,
            '--steps', 'hat-mm', '--iters', '1', '--warmup', '2', '--out', out, *extra]


def warm_items(chosen, compiled):
    """Names of the chosen items whose graphs the precompiled items (names) compiled: those
    items, and the profile and throughput items of a model whose bf16 defaults compiled."""
    warm = set(compiled)
    for name, _, _ in chosen:
        kind, _, rest = name.partition('/')
        model = rest.split('/')[0]
        if kind in ('profile', 'throughput') and f'bench/bf16/{model}/defaults' in compiled:
            warm.add(name)
    return warm


def precompile(chosen, n, out_dir, seconds, command_of=precompile_command):
    """Run the compiles of the first ``n`` chosen items that compile, side by side, for at
    most ``seconds``; the names of those that ended well, and the index row."""
    jobs = []
    for item in chosen:
        cmd = command_of(item, out_dir) if len(jobs) < n else None
        if cmd:
            jobs.append((item[0], cmd))
    if not jobs:
        return set(), None
    os.makedirs(osp.join(out_dir, 'precompile'), exist_ok=True)
    print(f'[gpu_measurements] precompile: {", ".join(j[0] for j in jobs)} at once '
          f'(at most {seconds:.0f} s)', flush=True)
    began, procs = time.time(), []
    for name, cmd in jobs:
        log = open(osp.join(out_dir, 'logs', 'precompile_' + name.replace('/', '_') + '.log'),
                   'w')
        log.write('+ ' + ' '.join(cmd) + '\n')
        log.flush()
        procs.append((name, log, subprocess.Popen(cmd, cwd=ROOT, stdout=log,
                                                  stderr=subprocess.STDOUT,
                                                  start_new_session=True)))
    done = set()
    for name, log, proc in procs:
        try:
            rc = proc.wait(timeout=max(seconds - (time.time() - began), 0))
        except subprocess.TimeoutExpired:
            _stop(proc)
            rc = None
        log.close()
        if rc == 0:
            done.add(name)
    took = round(time.time() - began, 1)
    status = f'done: {len(done)} of {len(jobs)}' + (
        f' (not: {", ".join(j[0] for j in jobs if j[0] not in done)})'
        if len(done) < len(jobs) else '')
    print(f'[gpu_measurements] precompile: {status} in {took} s', flush=True)
    return done, dict(item='precompile', status=status, seconds=took,
                      command=[f'{len(jobs)} x benchmark_hat.py ... --iters 1 --warmup 2'],
                      estimate=seconds)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out-dir', default='work_dirs/gpu_measurements')
    p.add_argument('--budget', type=float, default=float('inf'), metavar='SECONDS',
                   help='start no item that would not end in time; stop a running one there')
    p.add_argument('--only', nargs='+', default=['*'], metavar='PATTERN',
                   help="shell patterns of item names, e.g. 'bench/bf16/*' gpu_check")
    p.add_argument('--data', default='data/synthetic_imagenet',
                   help='generated training images for the throughput items')
    p.add_argument('--precompile', type=int, default=0, metavar='N',
                   help='first compile the steps of the first N chosen items that compile, '
                   'all at once (inductor caches them for the timed runs)')
    p.add_argument('--list', action='store_true', help='print the plan, run nothing')
    a = p.parse_args(argv)
    if a.budget <= 0:
        p.error(f'--budget {a.budget:g}: give the seconds the measurements may take, e.g. '
                '--budget 1800 (without it: no limit)')
    if a.precompile < 0:
        p.error(f'--precompile {a.precompile}: give how many items to compile first, 0 '
                '(none, the default) or more, e.g. --precompile 4')
    return a


def command(argv, out_dir, data):
    """The item's command line: placeholders filled in, optional files dropped if absent."""
    cmd = [sys.executable]
    for arg in argv:
        arg = arg.format(out=out_dir, data=data)
        if arg.endswith('?'):
            if osp.isfile(arg[:-1]):
                cmd.append(arg[:-1])
            else:
                cmd.pop()  # and its option
            continue
        cmd.append(arg)
    return cmd


def run_one(cmd, log, seconds):
    """Run ``cmd`` in its own process group, output to ``log``; its status."""
    with open(log, 'w') as f:
        f.write('+ ' + ' '.join(cmd) + '\n')
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return 'stopped at the budget'
    return 'done' if rc == 0 else f'failed (exit {rc})'


def _stop(proc):
    """SIGTERM to the process group of ``proc``, then SIGKILL after 15 s."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace)
            break
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def machine():
    """The GPU, torch and commit the numbers belong to."""
    import torch
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                                capture_output=True).stdout.strip() or 'unknown'
    except OSError:
        commit = 'unknown'
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU (CPU)'
    return dict(gpu=gpu, torch=torch.__version__, cuda=torch.version.cuda, commit=commit,
                cpus=os.cpu_count(), date=time.strftime('%Y-%m-%d %H:%M:%S'))


def write_index(out_dir, header, rows):
    lines = [f"# GPU measurements: {header['gpu']}", '',
             f"torch {header['torch']} (CUDA {header['cuda']}), {header['cpus']} CPU cores, "
             f"hat-mm {header['commit']}, started {header['date']}.", '',
             '| item | status | seconds | command |', '|---|---|---|---|']
    lines += [f"| {r['item']} | {r['status']} | {r.get('seconds', '')} | "
              f"`{' '.join(r['command'])}` |" for r in rows]
    with open(osp.join(out_dir, 'measurements.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(osp.join(out_dir, 'measurements.json'), 'w') as f:
        json.dump(dict(header, items=rows), f, indent=2)


def tabulate(out_dir, amp, models):
    """Rewrite bench_<amp>/tables.md over every model measured so far."""
    configs = [CONFIGS[m] for m in models if m in CONFIGS]
    if not configs:
        return
    subprocess.run([sys.executable, 'tools/analysis/benchmark_tables.py', '--tabulate-only',
                    '--amp', amp, '--out-dir', osp.join(out_dir, f'bench_{amp}'),
                    '--configs', *configs],
                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None, items=None, precompile_command_of=precompile_command):
    args = parse_args(argv)
    out_dir, data = osp.abspath(args.out_dir), osp.abspath(args.data)
    chosen = [it for it in (ITEMS if items is None else items)
              if any(fnmatch.fnmatchcase(it[0], p) for p in args.only)]
    if not chosen:
        raise SystemExit(f'--only {" ".join(args.only)}: no item matches; the items: '
                         + ', '.join(it[0] for it in (items or ITEMS)))
    if args.list:
        for name, estimate, argv_ in chosen:
            print(f'{name:40s} ~{estimate:4d} s  ' + ' '.join(command(argv_, out_dir, data)))
        print(f'{len(chosen)} items, ~{sum(it[1] for it in chosen)} s in all')
        return []
    os.makedirs(osp.join(out_dir, 'logs'), exist_ok=True)
    header, rows, start = machine(), [], time.time()
    benched = {}  # amp -> models with a bench run
    warm = set()
    if args.precompile > 0:
        compiled, row = precompile(chosen, args.precompile, out_dir,
                                   min(PRECOMPILE_SECONDS, args.budget),
                                   command_of=precompile_command_of)
        warm = warm_items(chosen, compiled)
        if row:
            rows.append(row)
            write_index(out_dir, header, rows)
    for name, estimate, argv_ in chosen:
        cmd = command(argv_, out_dir, data)
        left = args.budget - (time.time() - start)
        if name in warm:
            estimate = max(1, round(estimate * WARM_SHARE))
        row = dict(item=name, command=cmd, estimate=estimate)
        if estimate > left:
            row['status'] = f'not run (needs ~{estimate} s, {max(left, 0):.0f} s left)'
        else:
            print(f'[gpu_measurements] {name} (~{estimate} s, {left:.0f} s left)', flush=True)
            began = time.time()
            log = osp.join(out_dir, 'logs', name.replace('/', '_') + '.log')
            row['status'] = run_one(cmd, log, left)
            row['seconds'] = round(time.time() - began, 1)
            print(f"[gpu_measurements] {name}: {row['status']} in {row['seconds']} s",
                  flush=True)
            if name.startswith('bench/'):
                _, amp, model, _ = name.split('/', 3)
                benched.setdefault(amp, []).append(model)
                tabulate(out_dir, amp, list(dict.fromkeys(benched[amp])))
        rows.append(row)
        write_index(out_dir, header, rows)
    failed = [r['item'] for r in rows if r['status'].startswith('failed')]
    print(f'[gpu_measurements] {sum(r["status"] == "done" for r in rows)} of {len(rows)} '
          f'items done' + (f'; failed: {", ".join(failed)}' if failed else '')
          + f'; index: {osp.join(out_dir, "measurements.md")}', flush=True)
    return rows


if __name__ == '__main__':
    sys.exit(1 if any(r['status'].startswith('failed') for r in main()) else 0)

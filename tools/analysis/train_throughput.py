#!/usr/bin/env python
"""End-to-end training throughput of ``tools/train.py`` with the config's real data pipeline
on generated JPEG data, for several numbers of data-loading workers:

    python tools/analysis/train_throughput.py configs/hat_swin_t.py [--workers 4 8 12 16]
        [--batch-size 128] [--iters 60] [--amp bf16] [--data DIR] [--step-json FILE]
        [--work-dir work_dirs/train_throughput] [--cfg-options ...] [--breakdown]
        [--loader-only [--feed IMG_PER_S ...]]

For each worker count, one run of ``tools/train.py`` (one process, one GPU) trains ``--iters``
iterations in HAT's adversarial phase on ``make_synthetic_imagenet.py`` images (500x375 JPEG,
about ImageNet's file size; generated once into ``--data``, with random token-label score
maps when the pipeline loads them, as the VOLO configs' does). The throughput is the global
batch over the median logged iteration time after the first ``--skip`` iterations; the data
share is mmengine's ``data_time`` over ``time`` (the wait for the next batch). The smallest
worker count within 3% of the best throughput, with a data share under 5%, is the one that
keeps the GPU fed. ``--step-json`` (``benchmark_hat.py --out``) adds the ratio to the
benchmark's step alone (random tensors, no data pipeline). ``--breakdown`` adds
``IterationBreakdownHook`` (``tools/analysis/iteration_breakdown.py``) to the runs and a table
of where an iteration's time goes (data wait, data preprocessor, the step, each hook); the
device is then synchronised between the parts, so use the throughput of a run without it.

``--loader-only`` times the config's training data loader alone, in this process, with no
model and no GPU (so it runs on any machine): images per second for each worker count, after
the first ``max(--skip, workers)`` batches (while every worker starts on its first batch).
The loader is then never waited on by a step, so each worker runs flat out; the rate per
worker says how many workers (and free CPU cores) a step of a given speed needs:
``--step-json`` adds that count for the benchmark's step, ``--feed`` for any step rates. It
also gives the loading process's own time per batch when the workers are ahead (taking a
made batch from a worker), which a training run pays on every iteration on top of the step.
"""
import argparse
import json
import math
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.analysis.gpu_check import iteration_logs  # noqa: E402
from tools.tiny_run_options import pretrain_options  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config')
    p.add_argument('--workers', type=int, nargs='+', default=[4, 8, 12, 16])
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--iters', type=int, default=60)
    p.add_argument('--skip', type=int, default=10, help='iterations not timed (warm-up)')
    p.add_argument('--amp', choices=['fp16', 'bf16'], default=None)
    p.add_argument('--data', default='data/synthetic_imagenet',
                   help='generated once here if it has no meta/train.txt')
    p.add_argument('--image-size', default='500x375')
    p.add_argument('--step-json', default=None, help='benchmark_hat.py --out of this config')
    p.add_argument('--work-dir', default='work_dirs/train_throughput')
    p.add_argument('--cfg-options', nargs='+', default=[])
    p.add_argument('--breakdown', action='store_true',
                   help='time the parts of each iteration (slower runs; see the docstring)')
    p.add_argument('--loader-only', action='store_true',
                   help='time the data loader alone (no model, no GPU)')
    p.add_argument('--feed', type=float, nargs='+', default=[], metavar='IMG_PER_S',
                   help='--loader-only: the workers that these step rates need')
    a = p.parse_args(argv)
    if not osp.isfile(a.config):
        p.error(f'config not found: {a.config} (a path like configs/hat_swin_t.py)')
    if a.iters <= a.skip:
        p.error(f'--iters {a.iters} must be larger than --skip {a.skip}')
    if min(a.workers) < 0:
        p.error('--workers: numbers of data-loading workers, 0 or more')
    if a.loader_only and a.iters <= max(a.workers):
        p.error(f'--loader-only: --iters {a.iters} must be larger than the largest --workers '
                f'{max(a.workers)} (each worker\'s first batch is not timed)')
    if a.feed and not a.loader_only:
        p.error('--feed goes with --loader-only')
    if a.breakdown and a.loader_only:
        p.error('--breakdown times training iterations: not with --loader-only')
    return a


def ensure_data(path, images, size):
    """Generated JPEG images in ``path``: those there if they are enough, else generated
    anew, into a missing or empty folder or one of generated images only (a data set of
    yours, given by mistake, is refused, not overwritten)."""
    from tools.dataset_converters.make_synthetic_imagenet import (check_writable_folder,
                                                                  make_synthetic_imagenet,
                                                                  parse_size)
    meta = osp.join(path, 'meta', 'train.txt')
    have = None
    if osp.exists(meta):
        with open(meta) as f:
            have = sum(1 for line in f if line.strip())
        if have >= images:
            return
    try:
        check_writable_folder(path)
    except FileExistsError as err:
        raise SystemExit(f'--data {path}: {images} training images are needed'
                         + (f' and it has {have}' if have is not None else '')
                         + f'; it is not written into: {err}') from None
    if have is not None:
        print(f'[train_throughput] {path} has {have} images, {images} needed: regenerating')
    print(f'[train_throughput] generating {images} JPEG images into {path} ...', flush=True)
    make_synthetic_imagenet(path, num_train=images, num_val=0, num_classes=10,
                            size=parse_size(size))


def token_label_options(args):
    """For a pipeline with ``LoadTokenLabel`` (the VOLO configs): random score maps of the
    model's label grid beside the generated images, and the option that points to them."""
    from mmengine.config import Config
    from tools.dataset_converters.make_synthetic_imagenet import make_synthetic_token_labels
    cfg = Config.fromfile(args.config)
    steps = [s.get('type') for s in cfg.train_dataloader.dataset.pipeline]
    if 'LoadTokenLabel' not in steps:
        return []
    grid = cfg.model.get('data_preprocessor', {}).get('label_size', 14)
    root = osp.join(args.data, 'token_labels')
    with open(osp.join(args.data, 'meta', 'train.txt')) as f:
        last = [line.split()[0] for line in f if line.strip()][-1]
    if not osp.isfile(osp.join(root, osp.splitext(last)[0] + '.pt')):
        print(f'[train_throughput] writing {grid}x{grid} token-label maps into {root}',
              flush=True)
        make_synthetic_token_labels(args.data, grid=grid)
    return [f'train_dataloader.dataset.pipeline.{steps.index("LoadTokenLabel")}'
            f'.label_root={root}']


def config_with_breakdown(args, work_dir):
    """The config with ``IterationBreakdownHook`` added, written into ``work_dir``."""
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    cfg.custom_imports = dict(imports=[*imports, 'tools.analysis.iteration_breakdown'],
                              allow_failed_imports=False)
    cfg.custom_hooks = [*cfg.get('custom_hooks', []),
                        dict(type='IterationBreakdownHook', skip=args.skip)]
    path = osp.join(work_dir, 'config_with_breakdown.py')
    cfg.dump(path)
    return path


def measure(args, workers):
    """One tools/train.py run; its throughput numbers."""
    from tools.analysis.iteration_breakdown import RESULT_FILE
    work_dir = osp.join(args.work_dir, f'workers{workers}')
    os.makedirs(work_dir, exist_ok=True)
    config = config_with_breakdown(args, work_dir) if args.breakdown else args.config
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
           '--work-dir', work_dir, '--no-validate']
    if args.amp:
        cmd += ['--amp', args.amp]
    cmd += ['--cfg-options', *pretrain_options(args.data, args.iters * args.batch_size,
                                               args.batch_size, epochs=1, workers=workers),
            'default_hooks.checkpoint.interval=1000', 'log_processor.window_size=1',
            *args.cfg_options]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    with open(osp.join(work_dir, 'output.log'), 'w') as f:
        f.write(proc.stdout)
    logs = iteration_logs(proc.stdout)[args.skip:]
    if proc.returncode != 0 or not logs:
        raise SystemExit(f'[train_throughput] tools/train.py with {workers} workers failed '
                         f'(exit {proc.returncode}); see {osp.join(work_dir, "output.log")}')
    if not all('loss_kl_adv' in r for r in logs):
        raise SystemExit('[train_throughput] the timed iterations are not all HAT steps (no '
                         f'loss_kl_adv logged); see {osp.join(work_dir, "output.log")}')
    sec = statistics.median(r['time'] for r in logs)
    data = statistics.median(r.get('data_time', 0.0) for r in logs)
    memory = max((r['memory'] for r in logs if 'memory' in r), default=None)
    row = dict(workers=workers, sec_per_iter=sec, img_per_s=args.batch_size / sec,
               data_share=data / sec, peak_memory_mb=memory, timed_iters=len(logs))
    if args.breakdown:
        with open(osp.join(work_dir, RESULT_FILE)) as f:
            row['breakdown_s'] = json.load(f)['median_s']
    return row


def measure_loader(args, workers):
    """The config's training data loader alone, in this process: its throughput."""
    from mmengine.config import Config, DictAction
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    cfg = Config.fromfile(args.config)  # imports the config's custom_imports (hat_mm)
    options = argparse.ArgumentParser()
    options.add_argument('--o', nargs='+', action=DictAction)
    cfg.merge_from_dict(options.parse_args(['--o', *pretrain_options(
        args.data, args.iters * args.batch_size, args.batch_size, workers=workers),
        *args.cfg_options]).o)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    # workers that end with their iterator: none left prefetching into the next measurement
    cfg.train_dataloader.persistent_workers = False
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    batches = iter(loader)
    # The first batch of each worker is made while all of them start up: not timed.
    for _ in range(max(args.skip, workers)):
        next(batches)
    start = time.perf_counter()
    timed = sum(1 for _ in batches)
    sec = time.perf_counter() - start
    del batches  # ends the workers
    img_per_s = timed * args.batch_size / sec
    row = dict(workers=workers, img_per_s=img_per_s, timed_iters=timed,
               img_per_s_per_worker=img_per_s / max(workers, 1))
    if workers:
        row['fetch_ms'] = ready_batch_ms(loader, args.batch_size / row['img_per_s_per_worker'])
    return row


def ready_batch_ms(loader, worker_batch_s, batches=4):
    """Median time the loading process spends taking a batch that is already made (ms).

    That is its own work per batch while a step runs (receiving the batch from a worker and
    unpickling it), which a step that is not waiting for data pays on every iteration: one
    tensor with ``default_collate``, one per image with mmengine's ``pseudo_collate``. The
    workers fill their queue (2 batches each) while this process sleeps, then the batches
    are taken one after the other.
    """
    batches = min(batches, 2 * loader.num_workers, len(loader) - 1)
    ready = iter(loader)
    next(ready)  # every worker has started
    time.sleep(3 * worker_batch_s + 0.5)
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        next(ready)
        times.append(time.perf_counter() - start)
    del ready
    return 1e3 * statistics.median(times)


def loader_table(args, rows, feed):
    lines = [f'Data loader alone, `{args.config}` training pipeline, batch {args.batch_size}, '
             f'{args.image_size} JPEG data, {os.cpu_count()} CPU cores, {args.iters} batches '
             '(timed after each worker\'s first)', '',
             '| workers | img/s | img/s per worker | ms to take a ready batch |'
             + ''.join(f' workers for {f:.0f} img/s |' for f in feed),
             '|---|---|---|---|' + '---|' * len(feed)]
    for r in rows:
        over = ' (more than the cores)' if r['workers'] > os.cpu_count() else ''
        fetch = f"{r['fetch_ms']:.1f}" if r.get('fetch_ms') is not None else '-'
        lines.append(f"| {r['workers']}{over} | {r['img_per_s']:.0f} | "
                     f"{r['img_per_s_per_worker']:.0f} | {fetch} |"
                     + ''.join(f' {math.ceil(f / r["img_per_s_per_worker"])} |' for f in feed))
    lines += ['', '0 workers: the loading process itself. A worker needs a CPU core of its own: '
              'rates per worker hold while the workers have free cores. "ms to take a ready '
              'batch": the loading process\'s own time per batch when the workers are ahead '
              '(receiving and unpickling it), paid on every iteration of a training run.']
    return '\n'.join(lines)


def fed_by(rows):
    """The smallest worker count within 3% of the best throughput with a data share < 5%."""
    best = max(r['img_per_s'] for r in rows)
    fed = [r for r in rows if r['img_per_s'] >= 0.97 * best and r['data_share'] < 0.05]
    return min(fed, key=lambda r: r['workers'])['workers'] if fed else None


def table(args, rows, step):
    lines = [f'End-to-end `tools/train.py {args.config}`'
             f"{' --amp ' + args.amp if args.amp else ''}, batch {args.batch_size}, "
             f'{args.iters} iterations (median after {args.skip}), {args.image_size} JPEG data',
             '', '| workers | img/s | s/iter | data share | peak memory (MB) |'
             + (' vs step alone |' if step else ''),
             '|---|---|---|---|---|' + ('---|' if step else '')]
    for r in rows:
        line = (f"| {r['workers']} | {r['img_per_s']:.0f} | {r['sec_per_iter']:.3f} | "
                f"{100 * r['data_share']:.1f}% | {r['peak_memory_mb'] or '-'} |")
        if step:
            line += f" {r['img_per_s'] / step:.2f} |"
        lines.append(line)
    n = fed_by(rows)
    lines += ['', f'Workers that keep the step fed: {n}' if n is not None else
              'No worker count keeps the step fed (data share >= 5% or still rising): '
              'data loading is the bottleneck']
    if step:
        lines.append(f'Step alone (benchmark_hat.py, random tensors): {step:.0f} img/s')
    if any('breakdown_s' in r for r in rows):
        lines += ['', breakdown_table(rows)]
    return '\n'.join(lines)


def breakdown_table(rows):
    """Median ms of each part of an iteration (--breakdown), one column per run."""
    rows = [r for r in rows if 'breakdown_s' in r]
    parts = sorted({k for r in rows for k in r['breakdown_s']} - {'iteration', 'other'},
                   key=lambda k: (k.startswith('hook:'), k))
    lines = ['Where an iteration goes (median ms, the device synchronised between the parts, '
             'so the sum is slower than the run\'s s/iter):', '',
             '| part |' + ''.join(f" {r['workers']} workers |" for r in rows),
             '|---|' + '---|' * len(rows)]
    for part in [*parts, 'other', 'iteration']:
        lines.append(f'| {part} |' + ''.join(
            f" {1e3 * r['breakdown_s'].get(part, 0.0):.1f} |" for r in rows))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    ensure_data(args.data, args.iters * args.batch_size, args.image_size)
    args.cfg_options = token_label_options(args) + args.cfg_options
    step = None
    if args.step_json:
        with open(args.step_json) as f:
            step = json.load(f)['steps']['hat-mm']['img_per_s']
    feed = args.feed + ([step] if step else [])
    rows = []
    for workers in args.workers:
        r = measure_loader(args, workers) if args.loader_only else measure(args, workers)
        rows.append(r)
        print(f"[train_throughput] {'data loader, ' * args.loader_only}{workers:3d} workers: "
              f"{r['img_per_s']:8.1f} img/s"
              + ('' if args.loader_only else f", data share {100 * r['data_share']:.1f}%"),
              flush=True)
    if args.loader_only:
        name, text = 'loader', loader_table(args, rows, feed)
        report = dict(cpu_count=os.cpu_count(), rows=rows, feed=feed)
    else:
        name, text = 'throughput', table(args, rows, step)
        report = dict(amp=args.amp, rows=rows, fed_by=fed_by(rows), step_img_per_s=step)
    print(text)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, f'{name}.md'), 'w') as f:
        f.write(text + '\n')
    with open(osp.join(args.work_dir, f'{name}.json'), 'w') as f:
        json.dump(dict(config=args.config, batch_size=args.batch_size, **report), f, indent=2)
    return rows


if __name__ == '__main__':
    main()

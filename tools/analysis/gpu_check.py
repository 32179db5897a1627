#!/usr/bin/env python
"""Check every task of hat-mm on this machine's GPU with the real tools, in a few minutes,
and end in a table of pass/fail with numbers (``bash tools/gpu_check.sh`` runs this):

    python tools/analysis/gpu_check.py [--work-dir work_dirs/gpu_check] [--rows PATTERN ...]
                                       [--row-timeout SECONDS] [--keep-checkpoints] [--jobs N]

Rows (``--rows`` takes shell patterns of their names, e.g. ``ops 'pretrain/vit_t/*'``):

- ``ops``: the detection ops on CUDA against mmcv's CPU kernels
  (``tools/analysis/check_detection_ops.py``);
- ``pretrain/<model>/<precision>`` for Swin-T, ViT-T and ViT-B (``configs/hat_*.py``) in
  fp32, ``--amp`` (fp16, dynamic loss scaling) and ``--amp bf16``: ``tools/train.py`` on
  generated ImageNet-layout images of the real 224 size (``make_digits_imagenet.py``), one
  epoch of a few iterations, then ``--resume`` for a second epoch. Passes when both runs end
  well, every logged loss is finite, the adversarial terms ``loss_ce_adv``/``loss_kl_adv`` are
  logged every iteration, the resumed run says ``resumed epoch: 1`` and both checkpoints exist.
  These rows run eager (``model.compile=None``): compiling the model twice in each of nine
  rows would take the check far past its minutes;
- ``dist_train/vit_t``: ``tools/dist_train.sh`` with one process per GPU (NCCL), ``--amp
  bf16`` and the config's own model options, so on CUDA ``torch.compile`` inside DDP as a
  user's first run (the row gets twice ``--row-timeout`` for the compiling);
- ``det/swin_t``: the Swin-T checkpoint of ``pretrain/swin_t/fp32`` loaded into Cascade Mask
  R-CNN (every backbone weight must match), two ``--amp`` iterations on ``make_tiny_coco.py``
  data, then ``tools/test.py --amp``: bbox and segm mAP finite;
- ``seg/swin_t``: the same checkpoint in UperNet, two ``--amp`` iterations on
  ``make_tiny_ade20k.py`` data, then ``tools/test.py --tta --amp``: mIoU(MS) finite.

Each row runs the tools in subprocesses under ``--row-timeout`` and reports its seconds per
training iteration (mmengine's ``time``: the median over each run's iterations after its
first), peak GPU memory (mmengine's ``memory``: the largest) and wall time. Logs,
``gpu_check.md`` and ``gpu_check.json`` go to the work dir; checkpoints are deleted after
their row unless ``--keep-checkpoints``.

``--jobs N`` runs up to N rows at a time on the same GPU (``det`` and ``seg`` start when
``pretrain/swin_t/fp32`` has ended): the check takes a fraction of the time, the pass/fail
verdicts and peak memories stay each row's own, but seconds per iteration then include the
other rows' load (the table's heading says so). Default 1.

Without CUDA the same rows run in a reduced CPU mode so that the whole logic runs anywhere:
fp32 only (AMP rows: ``skipped: no CUDA``), two processes with gloo for ``dist_train``, the
ops row on the fallback's torchvision route on CPU tensors, smaller batches.
"""
import argparse
import fnmatch
import json
import math
import os
import os.path as osp
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.tiny_run_options import (ade20k_options, ade20k_tta_options,  # noqa: E402
                                    coco_options, pretrain_options)

MODELS = dict(swin_t='configs/hat_swin_t.py', vit_t='configs/hat_vit_t.py',
              vit_b='configs/hat_vit_b.py')
PRECISIONS = dict(fp32=[], fp16=['--amp'], bf16=['--amp', 'bf16'])
DET_CONFIG = ('configs/downstream/'
              'cascade-mask-rcnn_hat-swin-t-p4-w7_fpn_giou-4conv1f_ms-crop-3x_coco.py')
SWIN_FP32 = 'pretrain/swin_t/fp32'  # its checkpoint goes into det and seg
SEG_CONFIG = 'configs/downstream/upernet_hat-swin-t-p4-w7_8xb2-160k_ade20k-512x512.py'
FIELD = re.compile(r'([A-Za-z_][\w./]*): (-?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|nan|inf))')


def row_names():
    return (['ops'] + [f'pretrain/{m}/{p}' for m in MODELS for p in PRECISIONS]
            + ['dist_train/vit_t', 'det/swin_t', 'seg/swin_t'])


def iteration_logs(output: str, mode: str = 'train') -> list:
    """The numeric ``name: value`` fields of every mmengine iteration line of ``mode``."""
    return [{k: float(v) for k, v in FIELD.findall(line)} for line in output.splitlines()
            if re.search(rf'(Epoch|Iter)\({mode}\)', line) and ' time: ' in line]


def loss_problems(logs: list, required=()) -> list:
    """What is wrong with the logged losses: none logged, not finite, required terms missing."""
    if not logs:
        return ['no training iteration logged']
    problems = sorted({f'{k} not finite' for r in logs for k, v in r.items()
                       if 'loss' in k and not math.isfinite(v)})
    problems += [f'{k} not logged every iteration' for k in required
                 if not all(k in r for r in logs)]
    return problems


def timing(logs: list) -> tuple:
    """(median seconds per iteration, peak memory MB), None where not logged."""
    times = [r['time'] for r in logs if 'time' in r]
    memory = [r['memory'] for r in logs if 'memory' in r]
    return (statistics.median(times) if times else None,
            int(max(memory)) if memory else None)


class Row:
    """One line of the table: runs commands, collects their output and checks."""

    def __init__(self, name, work_dir, timeout):
        self.name, self.timeout = name, timeout
        self.dir = osp.join(work_dir, name.replace('/', '_'))
        self.log = self.dir + '.log'
        self.status, self.numbers, self.train_logs, self.outputs = 'pass', '', [], []
        self.timed_logs = []  # the iterations after the first of each run
        self.start = time.time()
        self.sec_per_iter = self.peak_memory_mb = None

    def run(self, cmd, env=None):
        """Run ``cmd`` from the repo root (the row's remaining time as limit); its output."""
        left = self.timeout - (time.time() - self.start)
        full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get(
            'PYTHONPATH', ''), **(env or {}))
        with open(self.log, 'a') as log:
            log.write(f'$ {" ".join(cmd)}\n')
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too
            out = proc.communicate()[0] + f'\n[gpu_check] row timeout ({self.timeout} s)\n'
            self.fail(f'timed out after {self.timeout} s')
        with open(self.log, 'a') as log:
            log.write(out + f'[exit status {proc.returncode}]\n')
        if proc.returncode != 0 and self.status == 'pass':
            tool = next((c for c in cmd if c.endswith(('.py', '.sh'))), cmd[0])
            self.fail(f'{osp.basename(tool)} exited with {proc.returncode} '
                      f'(see {osp.relpath(self.log, ROOT)})')
        self.outputs.append(out)
        return out

    def fail(self, why):
        if self.status == 'pass':
            self.status = f'FAIL: {why}'

    def expect(self, condition, why):
        if not condition:
            self.fail(why)
        return condition

    def train(self, cmd, required=(), env=None):
        out = self.run(cmd, env)
        logs = iteration_logs(out)
        for problem in loss_problems(logs, required):
            self.fail(problem)
        self.train_logs += logs
        self.timed_logs += logs[1:] or logs
        return out

    def result(self):
        per_iter, memory = timing(self.timed_logs)
        memory_all = [r['memory'] for out in self.outputs
                      for mode in ('train', 'val', 'test')
                      for r in iteration_logs(out, mode) if 'memory' in r]
        return dict(name=self.name, status=self.status,
                    sec_per_iter=self.sec_per_iter or per_iter,
                    peak_memory_mb=self.peak_memory_mb or (int(max(memory_all))
                                                           if memory_all else memory),
                    wall_seconds=round(time.time() - self.start, 1), numbers=self.numbers,
                    log=osp.relpath(self.log, ROOT))


def skipped(name, why):
    return dict(name=name, status=f'skipped: {why}', sec_per_iter=None, peak_memory_mb=None,
                wall_seconds=0.0, numbers='', log='')


def last(logs, key):
    values = [r[key] for r in logs if key in r]
    return f'{key} {values[-1]:.4g}' if values else f'{key} -'


def read_json(path):
    with open(path) as f:
        return json.load(f)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def make_data(work_dir):
    """The generated data sets (written once into the work dir)."""
    from tools.dataset_converters.make_digits_imagenet import make_digits_imagenet
    from tools.dataset_converters.make_tiny_ade20k import make_tiny_ade20k
    from tools.dataset_converters.make_tiny_coco import make_tiny_coco
    data = dict(imagenet=osp.join(work_dir, 'data', 'digits224'),
                coco=osp.join(work_dir, 'data', 'tiny_coco'),
                ade20k=osp.join(work_dir, 'data', 'tiny_ade20k'))
    makers = dict(imagenet=lambda d: make_digits_imagenet(d, size=224),
                  coco=lambda d: make_tiny_coco(d, num_train=4, num_val=2, size=(192, 144)),
                  ade20k=lambda d: make_tiny_ade20k(d, num_train=6, num_val=2, size=(96, 128)))
    for key, path in data.items():
        done = osp.join(path, '.complete')
        if not osp.exists(done):
            shutil.rmtree(path, ignore_errors=True)
            makers[key](path)
            open(done, 'w').close()
    return data


class GpuCheck:
    """The rows, in order; ``run_row(name)`` gives the row's result dict."""

    def __init__(self, work_dir, data, cuda, gpus, timeout, keep_checkpoints):
        self.work_dir, self.data, self.cuda, self.gpus = work_dir, data, cuda, gpus
        self.timeout, self.keep = timeout, keep_checkpoints
        self.images, self.batch = (16, 4) if cuda else (2, 1)  # per process
        self.amp = ['--amp'] if cuda else []
        self.bf16 = ['--amp', 'bf16'] if cuda else []
        self.swin_checkpoint = None  # from pretrain/swin_t/fp32, for det and seg

    def run_row(self, name):
        kind, *rest = name.split('/')
        if kind == 'pretrain' and rest[1] != 'fp32' and not self.cuda:
            return skipped(name, 'no CUDA')
        if kind in ('det', 'seg') and self.swin_checkpoint is None:
            return skipped(name, 'needs the checkpoint of pretrain/swin_t/fp32')
        compiling = kind == 'dist_train' and self.cuda  # the config's torch.compile
        row = Row(name, self.work_dir, self.timeout * (2 if compiling else 1))
        shutil.rmtree(row.dir, ignore_errors=True)
        if osp.exists(row.log):
            os.remove(row.log)
        try:
            getattr(self, kind)(row, *rest)
        except Exception as e:  # a broken row is reported, the others still run
            row.fail(f'{type(e).__name__}: {e}')
        result = row.result()
        if not self.keep:
            for folder, _, files in os.walk(row.dir):
                for f in files:
                    path = osp.join(folder, f)
                    if f.endswith('.pth') and path != self.swin_checkpoint:
                        os.remove(path)
        return result

    def ops(self, row):
        numbers = row.dir + '.json'
        row.run([sys.executable, 'tools/analysis/check_detection_ops.py', '--device',
                 'cuda' if self.cuda else 'cpu', '--json', numbers])
        r = read_json(numbers)
        if r.get('skipped'):
            row.status, row.numbers = f'skipped: {r["skipped"]}', r['route']
            return
        row.expect(r['passed'], 'ops differ from the CPU path')
        row.peak_memory_mb = r['peak_memory_mb']
        row.numbers = (f'{r["route"]}: RoIAlign max abs diff '
                       f'{r["roi_align_max_abs_diff"]:.1e}, grad '
                       f'{r["roi_align_grad_max_abs_diff"]:.1e}; nms keeps '
                       f'{r["nms_kept"]} (same: {r["nms_same"]}); batched_nms 80 classes '
                       f'keeps {r["batched_nms_kept"]} (same: {r["batched_nms_same"]})')

    def pretrain(self, row, model, precision):
        cmd = [sys.executable, 'tools/train.py', MODELS[model], '--work-dir', row.dir,
               '--no-validate', *PRECISIONS[precision]]
        adv = ('loss_ce_adv', 'loss_kl_adv')
        eager = ['model.compile=None']  # dist_train checks the compiled default
        out = row.train(cmd + ['--cfg-options', *eager, *pretrain_options(
            self.data['imagenet'], self.images, self.batch, epochs=1)], adv)
        first = len(row.train_logs)
        row.expect('HAT: adversarial phase (K=3' in out, 'HAT adversarial phase not announced')
        row.expect(osp.isfile(osp.join(row.dir, 'epoch_1.pth')), 'epoch_1.pth not written')
        if precision != 'fp32':
            dtype = 'float16' if precision == 'fp16' else 'bfloat16'
            row.expect("type='AmpOptimWrapper'" in out and f"dtype='{dtype}'" in out,
                       f'no AmpOptimWrapper with {dtype} in the config')
        if row.name == SWIN_FP32 and row.status == 'pass':
            # det and seg start from it even if the resume half below fails (then their rows
            # still report, and this row names what broke)
            self.swin_checkpoint = osp.join(row.dir, 'epoch_1.pth')
        out = row.train(cmd + ['--resume', '--cfg-options', *eager, *pretrain_options(
            self.data['imagenet'], self.images, self.batch, epochs=2)], adv)
        row.expect('resumed epoch: 1' in out, '--resume did not continue after epoch 1')
        row.expect(re.search(r'Epoch\(train\)\s+\[2\]', out), 'no epoch 2 after --resume')
        final = osp.join(row.dir, 'epoch_2.pth')
        row.expect(osp.isfile(final), 'epoch_2.pth not written after --resume')
        row.numbers = f'{first}+{len(row.train_logs) - first} iterations (resumed); ' + \
            ', '.join(last(row.train_logs, k) for k in ('loss', 'loss_ce_adv', 'loss_kl_adv'))
        if row.name == SWIN_FP32 and row.status == 'pass':
            self.swin_checkpoint = final

    def dist_train(self, row, model):
        procs, backend = (self.gpus, 'nccl') if self.cuda else (2, 'gloo')
        out = row.train(['bash', 'tools/dist_train.sh', MODELS[model], str(procs),
                         '--work-dir', row.dir, '--no-validate', *self.bf16, '--cfg-options',
                         *pretrain_options(self.data['imagenet'], self.images * procs,
                                           self.batch)],
                        ('loss_ce_adv', 'loss_kl_adv'),
                        env=dict(PORT=str(free_port()), PYTHON=sys.executable))
        row.expect('Distributed training: True' in out and f'GPU number: {procs}' in out,
                   f'not {procs} distributed processes')
        row.expect(f"backend='{backend}'" in out, f'backend is not {backend}')
        row.expect(osp.isfile(osp.join(row.dir, 'epoch_1.pth')), 'epoch_1.pth not written')
        compiled = 'model.compile: torch.compile(' in out
        if self.cuda:
            row.expect(compiled, 'the model was not compiled (model.compile of the config)')
        row.numbers = (f'{procs} processes, {backend}, {"bf16, compiled" if compiled else "eager"}'
                       f'; {last(row.train_logs, "loss")}')

    def _downstream(self, row, config, options, required, checkpoint, test_args=(),
                    test_options=()):
        out = row.train([sys.executable, 'tools/train.py', config, '--work-dir', row.dir,
                         *self.amp, '--cfg-options', *options(self.swin_checkpoint)], required)
        row.expect(f'every weight matches the pretrained checkpoint {self.swin_checkpoint}'
                   in out, 'backbone not loaded from the HAT checkpoint')
        trained = osp.join(row.dir, checkpoint)
        row.expect(osp.isfile(trained), f'{checkpoint} not written')
        metrics = row.dir + '_metrics.json'
        row.run([sys.executable, 'tools/test.py', config, trained, '--work-dir',
                 row.dir + '_test', *self.amp, '--out', metrics, *test_args, '--cfg-options',
                 *options(None), *test_options])
        return read_json(metrics)

    def _finite(self, row, metrics, keys):
        for key in keys:
            row.expect(math.isfinite(metrics.get(key, math.nan)), f'{key} missing or not finite')
        return ', '.join(f'{key} {metrics.get(key, math.nan):.3f}' for key in keys) + (
            '' if self.cuda else ' (fp32: no CUDA)')

    def det(self, row, model):
        metrics = self._downstream(
            row, DET_CONFIG, lambda ckpt: coco_options(self.data['coco'], pretrained=ckpt),
            ('s2.loss_mask', 's2.loss_bbox'), 'epoch_1.pth')
        row.numbers = self._finite(row, metrics, ('coco/bbox_mAP', 'coco/segm_mAP'))

    def seg(self, row, model):
        metrics = self._downstream(
            row, SEG_CONFIG, lambda ckpt: ade20k_options(self.data['ade20k'], ckpt),
            ('decode.loss_ce', 'aux.loss_ce'), 'iter_2.pth', ['--tta'], ade20k_tta_options())
        row.numbers = self._finite(row, metrics, ('mIoU',)).replace('mIoU', 'mIoU(MS)', 1)


def markdown_table(results) -> str:
    def fmt(value, spec):
        return '-' if value is None else format(value, spec)

    def cells(*values):
        return '| ' + ' | '.join(str(v).replace('|', '/') for v in values) + ' |'

    lines = ['| check | result | s/iter | peak GPU MB | wall s | numbers |',
             '|---|---|---|---|---|---|']
    for r in results:
        lines.append(cells(r['name'], r['status'], fmt(r['sec_per_iter'], '.3f'),
                           fmt(r['peak_memory_mb'], 'd'), f'{r["wall_seconds"]:.1f}',
                           r['numbers']))
    return '\n'.join(lines) + '\n'


def all_passed(results) -> bool:
    return all(r['status'] == 'pass' or r['status'].startswith('skipped') for r in results)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'gpu_check'))
    parser.add_argument('--rows', nargs='+', default=['*'],
                        help=f'shell patterns of the rows to run, of: {" ".join(row_names())}')
    parser.add_argument('--row-timeout', type=float,
                        help='seconds each row may take (default: 240 with CUDA, 1800 without)')
    parser.add_argument('--keep-checkpoints', action='store_true')
    parser.add_argument('--jobs', type=int, default=1,
                        help='rows run at a time (seconds per iteration then include the '
                        'load of the others); default 1')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f'--jobs {args.jobs}: give 1 or more rows at a time')
    return args


def run_rows(check, names, jobs, report):
    """Each row's result, in the order of ``names``, running up to ``jobs`` rows at a time;
    the downstream rows (which load its checkpoint) start when ``pretrain/swin_t/fp32`` has
    ended. ``report(result)`` is called as each row ends."""
    downstream = [n for n in names if n.split('/')[0] in ('det', 'seg')]
    waiting = list(downstream)
    results, running = {}, {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        def submit(batch):
            running.update({pool.submit(check.run_row, n): n for n in batch})

        submit([n for n in names if n not in downstream])
        while running or waiting:
            if waiting and SWIN_FP32 not in running.values():
                submit(waiting)
                waiting = []
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                results[name] = future.result()
                report(results[name])
    return [results[n] for n in names]


def main(argv=None):
    args = parse_args(argv)
    import torch
    names = [n for n in row_names() if any(fnmatch.fnmatch(n, p) for p in args.rows)]
    if not names:
        raise SystemExit(f'--rows {" ".join(args.rows)} matches no row of: '
                         f'{" ".join(row_names())}')
    cuda = torch.cuda.is_available()
    timeout = args.row_timeout or (240 if cuda else 1800)
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    start = time.time()
    data = make_data(work_dir)
    from hat_mm.mmcv_cuda_fallback import mmcv_cpu_ops_ext
    summary = dict(
        device=torch.cuda.get_device_name() if cuda else 'CPU (no CUDA: reduced CPU mode)',
        gpus=torch.cuda.device_count(), torch=torch.__version__,
        mmcv_ops='CPU ops + torchvision on CUDA' if mmcv_cpu_ops_ext() else 'CUDA ops',
        data_seconds=round(time.time() - start, 1), rows=[])
    print(f'[gpu_check] {summary["device"]}, torch {summary["torch"]}, mmcv '
          f'{summary["mmcv_ops"]}; data in {work_dir}/data', flush=True)
    summary['jobs'] = args.jobs
    check = GpuCheck(work_dir, data, cuda, summary['gpus'], timeout, args.keep_checkpoints)
    summary['rows'] = run_rows(check, names, args.jobs, lambda r: print(
        f'[gpu_check] {r["name"]}: {r["status"]} ({r["wall_seconds"]:.1f} s)', flush=True))
    if check.swin_checkpoint and not args.keep_checkpoints:
        os.remove(check.swin_checkpoint)
    summary['total_seconds'] = round(time.time() - start, 1)
    summary['passed'] = all_passed(summary['rows'])
    table = markdown_table(summary['rows'])
    with open(osp.join(work_dir, 'gpu_check.md'), 'w') as f:
        f.write(f'{summary["device"]}, torch {summary["torch"]}, mmcv {summary["mmcv_ops"]}, '
                f'{summary["total_seconds"]:.0f} s in all'
                + (f', {args.jobs} rows at a time (s/iter includes their load)'
                   if args.jobs > 1 else '') + f'\n\n{table}')
    with open(osp.join(work_dir, 'gpu_check.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print('\n' + table + f'\n{"all rows pass" if summary["passed"] else "SOME ROWS FAIL"} '
          f'({summary["total_seconds"]:.0f} s); table and numbers in {work_dir}/gpu_check.md '
          'and gpu_check.json')
    return 0 if summary['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())

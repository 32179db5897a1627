"""Where the time of a training iteration goes: :class:`IterationBreakdownHook` (analysis).

``tools/analysis/train_throughput.py --breakdown`` adds it to its ``tools/train.py`` runs. For
every training iteration after the first ``skip`` it times, with the device synchronised at
each boundary (so each part holds its own GPU work):

- ``data_wait``: from the end of the previous iteration to the start of this one (the data
  loader's next batch, and the other hooks' ``before_train_iter``);
- ``data_preprocessor``: the model's data preprocessor (copy to the device, normalisation,
  mixing, erasing);
- ``train_step``: the rest of ``model.train_step`` (the HAT passes and the optimizer step);
- ``hook:<class>``: each hook's ``after_train_iter`` (the logger, the non-finite check, ...);
- ``other``: the rest of the iteration (the loop itself, the other hook stages);
- ``iteration``: the sum.

The synchronisation takes away the overlap of host and device work, so a run with the hook is
slower than one without it: the hook says where the time goes, not how fast the run is. At
the end of training the medians (seconds) go to ``<work_dir>/iteration_breakdown.json`` and to
the log.
"""
import json
import os.path as osp
import statistics
import time
from collections import defaultdict

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

RESULT_FILE = 'iteration_breakdown.json'


def _sync():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@HOOKS.register_module()
class IterationBreakdownHook(Hook):
    """Times the parts of each training iteration (module docstring).

    Args:
        skip (int): first iterations not timed (warm-up). Default 2.
    """
    priority = 'LOWEST'  # its after_train_iter ends the iteration, after every other hook

    def __init__(self, skip: int = 2):
        self.skip = skip
        self.records = []
        self._current = None
        self._start = self._end = None

    def _timed(self, name, fn):
        def call(*args, **kwargs):
            if self._current is None:
                return fn(*args, **kwargs)
            _sync()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync()
            self._current[name] += time.perf_counter() - start
            return out
        return call

    def before_run(self, runner) -> None:
        model = runner.model
        bare = model.module if is_model_wrapper(model) else model
        model.train_step = self._timed('train_step', model.train_step)
        pre = bare.data_preprocessor
        pre.forward = self._timed('data_preprocessor', pre.forward)
        for hook in runner.hooks:
            kind = type(hook)  # Hook.after_train_iter calls _after_iter (IterTimerHook's)
            if hook is not self and (kind.after_train_iter is not Hook.after_train_iter
                                     or kind._after_iter is not Hook._after_iter):
                hook.after_train_iter = self._timed(f'hook:{kind.__name__}',
                                                    hook.after_train_iter)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        _sync()
        self._start = time.perf_counter()
        timed = runner.iter >= self.skip and self._end is not None
        self._current = defaultdict(float) if timed else None
        if timed:
            self._current['data_wait'] = self._start - self._end

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        _sync()
        self._end = time.perf_counter()
        if self._current is not None:
            parts = self._current
            parts['train_step'] -= parts['data_preprocessor']  # it runs inside train_step
            parts['iteration'] = parts['data_wait'] + self._end - self._start
            parts['other'] = parts['iteration'] - sum(
                v for k, v in parts.items() if k != 'iteration')
            self.records.append(dict(parts))
        self._current = None

    def medians(self) -> dict:
        keys = sorted({k for r in self.records for k in r})
        return {k: statistics.median(r.get(k, 0.0) for r in self.records) for k in keys}

    def after_train(self, runner) -> None:
        if not self.records:
            runner.logger.warning(f'IterationBreakdownHook: no iteration timed (skip='
                                  f'{self.skip}, {runner.iter} iterations run)')
            return
        medians = self.medians()
        with open(osp.join(runner.work_dir, RESULT_FILE), 'w') as f:
            json.dump(dict(timed_iters=len(self.records), median_s=medians), f, indent=2)
        runner.logger.info('Iteration breakdown (median ms over %d iterations, device '
                           'synchronised at each part): %s', len(self.records),
                           ', '.join(f'{k} {1e3 * v:.1f}' for k, v in medians.items()))

"""Checkpoints that a killed job or a full disk cannot take away.

mmengine's ``CheckpointHook`` removes the oldest checkpoint before it writes the new one, in
place, and then points ``last_checkpoint`` at it: a SIGKILL or a full disk in between leaves
no usable checkpoint (with ``max_keep_ckpts=1``: the old one deleted, the new one partial,
``last_checkpoint`` naming a missing file). :class:`SafeCheckpointHook` keeps every behaviour
and option of ``CheckpointHook`` and changes the order of things:

1. the weights (and the optimizer state it saves) are checked: NaN/inf are refused (the run
   stops, nothing written);
2. the checkpoint is written to a temporary file in the same directory, flushed, synced and
   renamed into place (:class:`AtomicLocalBackend`; a failed write names the file, removes
   the partial file and keeps everything else);
3. ``last_checkpoint`` is replaced, atomically as well;
4. only then are checkpoints beyond ``max_keep_ckpts`` (and the previous best) removed.

Remote ``out_dir`` s (``s3://``, ...) keep mmengine's behaviour.
"""
import os.path as osp
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS

from ..utils.checkpoint import CheckpointError, write_atomically
from .non_finite_hook import (bare_model, first_non_finite, first_non_finite_tensor,
                              optimizer_state_tensors)

ATOMIC_BACKEND = 'hat_atomic_local'


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic and whose removals can wait."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending = None  # paths to remove once the current save is complete

    def put(self, obj: bytes, filepath) -> None:
        write_atomically(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)

    def remove(self, filepath) -> None:
        if self._pending is None:
            super().remove(filepath)
        else:
            self._pending.append(str(filepath))

    @contextmanager
    def removals_deferred(self):
        """Collects the removals requested inside the block instead of doing them."""
        self._pending = []
        try:
            yield self._pending
        finally:
            self._pending = None


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes, rotation after the new checkpoint is complete,
    and no checkpoint from non-finite weights. Arguments: those of ``CheckpointHook``."""

    def before_train(self, runner) -> None:
        local = '://' not in str(self.out_dir or runner.work_dir)
        if local and self.backend_args is None and self.file_client_args is None:
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)

    @property
    def _atomic(self) -> bool:
        return isinstance(getattr(self, 'file_backend', None), AtomicLocalBackend)

    @staticmethod
    def _refuse_non_finite(runner, name: str, optimizer: bool = False) -> None:
        model = bare_model(runner)
        broken, what = first_non_finite(model), 'the weights are'
        wrapper = runner.optim_wrapper
        if broken is None and optimizer and isinstance(wrapper, OptimWrapper):
            # Adam's moments overflow on a huge gradient (no clipping) while the weights stay
            # finite; such a parameter stops moving, or turns NaN in a resumed run
            broken, what = first_non_finite_tensor(optimizer_state_tensors(
                wrapper.optimizer.state_dict(), wrapper.optimizer, model)), \
                'the optimizer state is'
        if broken is not None:
            raise CheckpointError(
                f'not saving {name}: {what} not finite ({broken} holds NaN/inf). The previous '
                'checkpoints are kept; gradient clipping (optim_wrapper.clip_grad=dict('
                'max_norm=1.0)) applies when resuming from the last one, a lower learning rate '
                "needs a new run (--resume continues the checkpoint's schedule).")

    def _save_checkpoint_with_step(self, runner, step, meta):
        filename = self.filename_tmpl.format(step)
        self._refuse_non_finite(runner, filename, self.save_optimizer)
        if not self._atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        write_atomically(osp.join(runner.work_dir, 'last_checkpoint'),
                         str(self.last_ckpt).encode())
        for old in outdated:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.save_best or not self._atomic:
            return super()._save_best_checkpoint(runner, metrics)
        self._refuse_non_finite(runner, 'the best checkpoint')
        with self.file_backend.removals_deferred() as outdated:
            super()._save_best_checkpoint(runner, metrics)
        # the previous best goes only now, and never a file that is in use again
        keep = {str(p) for p in [self.last_ckpt, getattr(self, 'best_ckpt_path', None),
                                 *getattr(self, 'best_ckpt_path_dict', {}).values()] if p}
        for path in outdated:
            if path not in keep and self.file_backend.isfile(path):
                self.file_backend.remove(path)

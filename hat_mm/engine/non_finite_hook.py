"""Stop a run whose losses, gradients or weights are no longer finite.

A diverging run (too high a learning rate, an fp16 overflow that loss scaling cannot absorb)
otherwise trains on with NaN weights to the end, writes NaN checkpoints and rotates the last
finite ones away. :class:`NonFiniteCheckHook` looks once per iteration, after the optimizer
step, at the logged loss terms (every output whose name contains ``loss``: ``loss``,
``loss_ce_clean``, ``loss_kl_adv``, ...), the gradient norm and the weights, and stops the run
with :class:`TrainingDivergedError` naming the iteration, the terms and what to try. It runs
before the checkpoint and EMA hooks, so nothing is saved from the broken weights;
:class:`hat_mm.engine.SafeCheckpointHook` refuses non-finite weights as well. A checkpoint
with non-finite values, from a run without this hook, is refused when it is resumed or loaded.
"""
import math
from typing import Iterable, Iterator, Optional, Tuple

import torch
from mmengine.dist import all_reduce, get_rank, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..utils.checkpoint import CheckpointError


def _either(tips: list) -> str:
    return ', '.join(tips[:-1]) + ' or ' + tips[-1] if len(tips) > 1 else tips[0]


def _advice(runner, scaler, last) -> str:
    """What to try. ``--resume`` restores the checkpoint's optimizer state and LR schedule
    (base LRs, warm-up and all), so a lower LR or a longer warm-up needs a new run; gradient
    clipping and bf16 come from the config and apply to a resumed run."""
    wrapper = runner.optim_wrapper
    lrs = [lr for group in (wrapper.get_lr() if hasattr(wrapper, 'get_lr') else {}).values()
           for lr in group]
    new_run = ['a lower learning rate' + (f' (now {max(lrs):.3g})' if lrs else '')
               + ': optim_wrapper.optimizer.lr', 'a longer warm-up (param_scheduler)']
    resumable = []
    if not getattr(wrapper, 'clip_grad_kwargs', None):
        resumable.append('gradient clipping: optim_wrapper.clip_grad=dict(max_norm=1.0)')
    if scaler is not None and getattr(wrapper, 'cast_dtype', None) != torch.bfloat16:
        resumable.append('--amp bf16 instead of fp16')
    if not last:
        return f'Try {_either(new_run + resumable)}; then start again.'
    return ((f'Continue from the last checkpoint with --resume and {_either(resumable)}, or '
             'start' if resumable else 'Start') + f' again with {_either(new_run)}: --resume '
            "continues the checkpoint's optimizer state and learning-rate schedule, not the "
            "config's.")


class TrainingDivergedError(RuntimeError):
    """Training produced non-finite values; the message names them and what to try."""


def first_non_finite(module: torch.nn.Module) -> Optional[str]:
    """The name of the first parameter or buffer holding NaN or inf, or None.

    Called after every iteration, so the common case is cheap: one fused multi-tensor norm
    per device and dtype (a NaN or inf makes the norm non-finite) and one host sync. Only
    when that flags something (or a norm overflows) are the tensors scanned one by one.
    """
    return first_non_finite_tensor(module.state_dict().items())


def first_non_finite_tensor(named: Iterable[Tuple[str, object]]) -> Optional[str]:
    """The name of the first floating-point tensor of ``(name, value)`` pairs that holds NaN
    or inf, or None (see :func:`first_non_finite`; values that are no tensors are skipped)."""
    tensors = [(k, v) for k, v in named
               if torch.is_tensor(v) and v.is_floating_point() and v.numel()]
    if not tensors:
        return None
    norms = torch._foreach_norm([v for _, v in tensors])
    if bool(torch.stack([n.float().to(norms[0].device) for n in norms]).isfinite().all()):
        return None
    return next((k for k, v in tensors if not bool(torch.isfinite(v).all())), None)


def _parameter_names(state: dict, optimizer, model) -> list:
    """The names of the parameters that ``state``'s indices count, when ``optimizer``'s
    groups hold as many parameters as the saved ones (the state is theirs); else ``[]``."""
    if optimizer is None or model is None:
        return []
    saved = [len(group['params']) for group in state.get('param_groups') or []]
    if saved != [len(group['params']) for group in optimizer.param_groups]:
        return []
    name_of = {id(p): n for n, p in model.named_parameters()}
    return [name_of.get(id(p)) for group in optimizer.param_groups for p in group['params']]


def optimizer_state_tensors(state: Optional[dict], optimizer=None, model=None) -> Iterator:
    """``('exp_avg of backbone.x', tensor)`` pairs of an optimizer ``state_dict()`` (the
    parameters are named when ``optimizer``'s groups, those the state was saved from, and
    ``model`` are given; by index otherwise)."""
    state = state or {}
    names = _parameter_names(state, optimizer, model)
    for index, values in (state.get('state') or {}).items():
        name = names[index] if isinstance(index, int) and index < len(names) \
            and names[index] else f'parameter #{index}'
        for key, value in (values.items() if isinstance(values, dict) else ()):
            yield f'optimizer {key} of {name}', value


def bare_model(runner) -> torch.nn.Module:
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stops training after ``max_bad_steps`` consecutive iterations with non-finite values.

    An iteration is bad when a logged loss term is NaN/inf, or, without loss scaling, the
    gradient norm (logged when ``optim_wrapper.clip_grad`` is set) is. Under dynamic loss
    scaling (``--amp fp16``) an overflowing gradient only makes the scaler skip the step and
    lower the scale: that is normal and not counted; counted are non-finite loss values of the
    forward and skipped steps that leave the scale below ``min_loss_scale`` (the scale
    collapsing). Non-finite weights stop the run at once: no later step can repair them.

    Args:
        max_bad_steps (int, optional): consecutive bad iterations that stop the run. Default:
            1, or 3 under dynamic loss scaling (where a single overflow can be transient).
        min_loss_scale (float): see above. Default 1.0.
    """

    priority = 'HIGH'  # after RuntimeInfoHook (logs the terms), before EMA and checkpoints

    def __init__(self, max_bad_steps: Optional[int] = None, min_loss_scale: float = 1.0):
        if max_bad_steps is not None and (isinstance(max_bad_steps, bool) or not isinstance(
                max_bad_steps, int) or max_bad_steps < 1):
            raise ValueError(f'NonFiniteCheckHook.max_bad_steps={max_bad_steps!r}: expected '
                             'None or an integer >= 1')
        self.max_bad_steps = max_bad_steps
        self.min_loss_scale = float(min_loss_scale)
        self._bad_steps = 0
        self._last_scale = None

    @staticmethod
    def _scaler(runner):
        scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
        return scaler if scaler is not None and scaler.is_enabled() else None

    def before_train(self, runner) -> None:
        scaler = self._scaler(runner)
        self._last_scale = float(scaler.get_scale()) if scaler is not None else None
        if getattr(runner, '_resume', False) and getattr(runner, '_load_from', None):
            # the file resumed from, not the path its message hub recorded when it was saved
            # (another folder, in a work dir copied or moved since)
            runner.message_hub.update_info('last_ckpt', runner._load_from)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse, before anything is loaded, a checkpoint with NaN/inf weights (or, to
        resume, optimizer state): saved by a run that had diverged without this hook, it
        would train one iteration and stop here, pointing back at itself."""
        resume = bool(getattr(runner, '_resume', False))
        weights = checkpoint.get('state_dict')
        if not isinstance(weights, dict):
            weights = checkpoint  # a bare state dict (load_from)
        named = [*weights.items(), *(checkpoint.get('ema_state_dict') or {}).items()]
        broken = first_non_finite_tensor(named)
        if broken is None and resume and isinstance(checkpoint.get('optimizer'), dict):
            broken = first_non_finite_tensor(optimizer_state_tensors(
                checkpoint['optimizer'], getattr(runner.optim_wrapper, 'optimizer', None),
                bare_model(runner)))
        if broken is None:
            return
        what = 'resume checkpoint' if resume else 'load_from checkpoint'
        path = getattr(runner, '_load_from', None) or ''
        raise CheckpointError(
            f'{what} {path} holds NaN/inf values (first: {broken}): it was saved after '
            'training had diverged (by a run without NonFiniteCheckHook). Nothing was loaded. '
            + ('Resume from an earlier checkpoint of the run: --resume PATH.' if resume else
               'Use another checkpoint.'))

    def _bad_values(self, runner, outputs) -> list:
        bad = []
        for name, value in (outputs or {}).items():
            if 'loss' in name and (torch.is_tensor(value) or isinstance(value, (int, float))):
                # already synchronised by RuntimeInfoHook's logging; mmdet's and mmseg's
                # logged losses still require grad (float() of one warns)
                value = float(value.detach() if torch.is_tensor(value) else value)
                if not math.isfinite(value):
                    bad.append(f'{name}={value}')
        scaler = self._scaler(runner)
        if scaler is None:
            grad_norm = runner.message_hub.log_scalars.get('train/grad_norm')
            if grad_norm is not None and not math.isfinite(grad_norm.current()):
                bad.append(f'grad_norm={grad_norm.current()}')
        else:
            scale = float(scaler.get_scale())
            if self._last_scale is not None and scale < min(self._last_scale,
                                                            self.min_loss_scale):
                bad.append(f'loss scale {scale:g} after another overflow (below '
                           f'min_loss_scale={self.min_loss_scale:g})')
            self._last_scale = scale
        return bad

    @staticmethod
    def _bad_on_other_ranks(bad_here: bool) -> list:
        """Each rank sees its own losses (under fp16 loss scaling a rank's overflowing
        forward leaves the others' finite): one all-reduce of a flag per rank, so that every
        rank counts the same iterations and all stop together. A rank stopping alone would
        leave the others waiting in the next gradient all-reduce until the collective timeout.
        """
        if not is_distributed():
            return []
        flags = torch.zeros(get_world_size())
        flags[get_rank()] = float(bad_here)
        all_reduce(flags)
        others = [r for r in flags.nonzero().flatten().tolist() if r != get_rank()]
        return [f'non-finite values on rank {", ".join(map(str, others))} (its log names '
                'them)'] if others else []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        bad = self._bad_values(runner, outputs)
        broken = first_non_finite(bare_model(runner))
        if broken is not None:
            bad.append(f'the weights are no longer finite (first: {broken})')
        bad += self._bad_on_other_ranks(bool(bad))
        if not bad:
            self._bad_steps = 0
            return
        self._bad_steps += 1
        limit = self.max_bad_steps or (3 if self._scaler(runner) is not None else 1)
        where = (f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}, batch '
                 f'{batch_idx + 1})')
        what = ', '.join(bad)
        if broken is None and self._bad_steps < limit:
            runner.logger.warning(f'Non-finite values at {where}: {what} ({self._bad_steps} '
                                  f'consecutive; the run stops at {limit}).')
            return
        last = runner.message_hub.get_info('last_ckpt')
        message = (
            f'Training stopped at {where}: {what} ({self._bad_steps} consecutive iteration(s) '
            f'with non-finite values; NonFiniteCheckHook.max_bad_steps={limit}). No checkpoint '
            'was written from these weights; '
            + (f'the last checkpoint is {last}. ' if last else 'none had been written yet. ')
            + _advice(runner, self._scaler(runner), last))
        runner.logger.error(message)
        raise TrainingDivergedError(message)

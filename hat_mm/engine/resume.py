"""What ``--resume`` resumes from, checked before anything is loaded.

mmengine's auto-resume reads ``last_checkpoint`` and hands the file to ``torch.load``: an
unreadable file ends in torch's own advice to switch weights-only loading off, a run without
a checkpoint logs "Auto resumed from the latest checkpoint None", and a checkpoint of another
architecture ends, after a warning per weight, in an optimizer error. :func:`prepare_resume`
resolves the file first, loads it through :func:`hat_mm.utils.load_checkpoint_file` and
compares its weights with the model; ``HATRunner`` calls it, ``tools/train.py`` calls it for
the other runners.
"""
import glob
import os
import os.path as osp
import time
from typing import Optional, Tuple

import torch
from mmengine.dist import barrier, get_rank
from mmengine.runner import BaseLoop, EpochBasedTrainLoop
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..utils.checkpoint import (CheckpointError, compare_state_dicts, describe_mismatch,
                                load_checkpoint_file, state_dict_of)
from .merged_param_groups import merge_param_groups
from .non_finite_hook import bare_model
from .timm_cosine_lr import TimmCosineLR


EARLIER_RUN_FILES = ('epoch_*.pth', 'iter_*.pth', 'best_*.pth')


def set_aside_earlier_run(work_dir: str, out_dir: Optional[str] = None) -> Tuple[str, int]:
    """Move the checkpoints of an earlier run in the folder this run saves to (mmengine's
    ``epoch_*``, ``iter_*``, ``best_*`` files of the work dir, or of
    ``<out_dir>/<work dir name>`` with the checkpoint hook's ``out_dir``) and the work dir's
    ``last_checkpoint`` into a new folder ``earlier_run_<time>`` there, so that a run started
    over without ``--resume`` overwrites none of them (mmengine would, file by file). Rank 0
    moves; every rank waits for it. Returns (that folder, the number of files moved)."""
    folder = osp.join(out_dir, osp.basename(osp.normpath(work_dir))) if out_dir else work_dir
    aside = osp.join(folder, time.strftime('earlier_run_%Y%m%d_%H%M%S'))
    moved = 0
    if get_rank() == 0:
        files = sorted({f for pattern in EARLIER_RUN_FILES
                        for f in glob.glob(osp.join(glob.escape(folder), pattern))})
        files.append(osp.join(work_dir, 'last_checkpoint'))
        os.makedirs(aside, exist_ok=True)
        for path in files:
            if osp.isfile(path):
                os.replace(path, osp.join(aside, osp.basename(path)))
                moved += 1
    barrier()
    return aside, moved


def _training_max_epochs(runner, training: Optional[bool]):
    """(whether ``runner`` is about to train, its ``max_epochs`` or None). The loop is built
    when ``HATRunner`` calls this (in ``train()``); tools/train.py calls it for other runners
    before, with ``training=True``, when the loop is still its config."""
    loop = getattr(runner, '_train_loop', None)
    if isinstance(loop, BaseLoop):
        epochs = loop.max_epochs if isinstance(loop, EpochBasedTrainLoop) else None
        return True if training is None else training, epochs
    epochs = loop.get('max_epochs') if isinstance(loop, dict) and loop.get(
        'by_epoch', loop.get('type') in (None, 'EpochBasedTrainLoop')) else None
    return bool(training), epochs


def prepare_resume(runner, training: Optional[bool] = None) -> None:
    """Resolve and check the checkpoint that ``runner`` resumes from (or loads).

    Auto-resume (``resume=True`` without ``load_from``) takes the work dir's latest
    checkpoint; without one the run starts from epoch 0 and says so (a requeued job that
    never saved starts over). The file must load weights-only and hold the model's weights,
    key for key and shape for shape; otherwise a :class:`CheckpointError` names the file and
    the mismatch before anything is loaded; so does an optimizer state whose parameter groups
    do not fit the config's optimizer (:func:`check_optimizer_groups`), and a checkpoint
    without optimizer or scheduler state (a ``best_*`` one). A learning rate of the config
    that differs from the checkpoint's is logged as unused. A ``load_from``
    checkpoint (fine-tuning; loaded non-strictly by mmengine) is only checked to load.
    """
    if runner._has_loaded:
        return
    if not runner._resume:
        if runner._load_from:
            check_load_from(runner, runner._load_from)
        earlier = osp.isfile(osp.join(runner.work_dir, 'last_checkpoint')) and \
            find_latest_checkpoint(runner.work_dir)
        if earlier and _training_max_epochs(runner, training)[0]:  # not when testing
            hook = (runner.cfg.get('default_hooks') or {}).get('checkpoint') or {}
            aside, moved = set_aside_earlier_run(runner.work_dir, hook.get('out_dir'))
            kept = osp.join(aside, osp.basename(earlier))
            runner.logger.warning(
                f'{runner.work_dir} held the checkpoints of an earlier run (last: {earlier}); '
                'this run starts from epoch 0 without them, and so that its checkpoints '
                f'replace none of them they were moved to {aside} ({moved} files). To continue '
                'the earlier run instead: stop this one and train with --resume '
                f'{kept if osp.isfile(kept) else earlier}')
        return
    path = runner._load_from
    if path is None:
        hook = (runner.cfg.get('default_hooks') or {}).get('checkpoint') or {}
        path = latest_checkpoint_in(runner.work_dir, runner.logger, hook.get('out_dir'))
        if not path:
            start = getattr(runner, 'auto_resume_load_from', None)  # set by tools/train.py
            runner.logger.warning(
                f'--resume: no checkpoint found in {runner.work_dir} (no last_checkpoint '
                'file); training starts from epoch 0' + (
                    f" with the weights of the config's load_from {start}." if start else '.'))
            runner._resume, runner._load_from = False, start or None
            if start:
                check_load_from(runner, start)
            return
        runner.logger.info(f'--resume: the latest checkpoint of {runner.work_dir} is {path}')
        runner._load_from = path
    try:
        checkpoint = load_checkpoint_file(path, 'resume checkpoint', mmap=True)  # shapes only
    except CheckpointError as e:  # a truncated or damaged file: name the others there
        folder = osp.dirname(path) or '.'
        others = [f for f in _checkpoints_in(folder) if f != osp.basename(path)] \
            if osp.isdir(folder) else []
        if not others:
            raise
        raise CheckpointError(
            f'{e} Other checkpoints in {osp.dirname(path)}: '
            + _resume_one_of(osp.dirname(path), others)) from None
    state = state_dict_of(checkpoint, f'resume checkpoint {path}')
    mismatch = describe_mismatch(compare_state_dicts(bare_model(runner).state_dict(), state))
    if mismatch:
        raise CheckpointError(
            f'resume checkpoint {path} does not match the model of this config ({mismatch}). '
            'Resume with the config the checkpoint was trained with; to start a new run from '
            f'its weights use --cfg-options load_from={path} without --resume. Nothing was '
            'loaded.')
    _allow_a_new_loss_scale(runner, checkpoint, path)
    epoch = (checkpoint.get('meta') or {}).get('epoch') if isinstance(checkpoint, dict) else None
    _refuse_a_partial_state(runner, checkpoint, path, epoch, training)
    max_epochs = _training_max_epochs(runner, training)[1]
    if isinstance(epoch, int) and isinstance(max_epochs, int) and epoch >= max_epochs:
        runner.logger.warning(
            f'--resume: {path} ends at epoch {epoch} and this config trains to '
            f'train_cfg.max_epochs={max_epochs}: nothing is left to train (raise '
            'train_cfg.max_epochs to train on)')
    saved = checkpoint.get('optimizer') if isinstance(checkpoint, dict) else None
    check_optimizer_groups(getattr(runner.optim_wrapper, 'optimizer', None), saved, path)
    _warn_a_changed_lr(runner, saved, path)
    _warn_a_saved_scheduler_end(runner, checkpoint, path, max_epochs)


def _warn_a_saved_scheduler_end(runner, checkpoint, path, max_epochs) -> None:
    """mmengine fills a scheduler's missing ``end`` with ``train_cfg.max_epochs`` and a resume
    restores it: resumed with a larger ``max_epochs``, such a scheduler stops at the first
    run's end. ``TimmCosineLR`` (the paper configs) goes on (it keeps this run's end); for
    the others this is said, not left silent."""
    saved = checkpoint.get('param_schedulers') if isinstance(checkpoint, dict) else None
    configured = (getattr(runner, 'cfg', None) or {}).get('param_scheduler')
    if not isinstance(saved, list) or not isinstance(max_epochs, int) or not configured:
        return
    configured = configured if isinstance(configured, (list, tuple)) else [configured]
    for i, (cfg, state) in enumerate(zip(configured, saved)):
        own = cfg.get('type') in ('TimmCosineLR', TimmCosineLR) if isinstance(cfg, dict) \
            else True
        if own or not isinstance(state, dict) or 'end' in cfg or not cfg.get('by_epoch', True):
            continue
        end = state.get('end')
        if isinstance(end, int) and end < max_epochs:
            runner.logger.warning(
                f'--resume: param_scheduler.{i} ({cfg.get("type")}) has no end in the '
                f'config, so the run that saved {path} ended it at its train_cfg.max_epochs, '
                f'{end}, and the resumed run keeps that end: its value stays as it is after '
                f'epoch {end}, up to max_epochs={max_epochs}. A config that sets '
                f'param_scheduler.{i}.end avoids this in a new run.')


def _refuse_a_partial_state(runner, checkpoint, path, epoch, training) -> None:
    """A checkpoint without the optimizer or LR-scheduler state (a ``best_*`` checkpoint, a
    published or converted one): mmengine would resume its epoch with Adam's moments at zero
    and the learning-rate schedule back at its first step (the warm-up again)."""
    if not _training_max_epochs(runner, training)[0] or not isinstance(checkpoint, dict):
        return
    wanted = dict(optimizer=('the optimizer', runner.optim_wrapper),
                  param_schedulers=('the learning-rate schedule',
                                    getattr(runner, 'param_schedulers', None)))
    lacking = [what for key, (what, used) in wanted.items() if used and key not in checkpoint]
    if lacking:
        raise CheckpointError(
            f'resume checkpoint {path} holds no state of {" or ".join(lacking)} (a best_* '
            'checkpoint, or one saved with save_optimizer=False or published): resuming it '
            f'would restart them at epoch {epoch}, from step 0. Resume from an epoch '
            'checkpoint of the run (epoch_N.pth); to start a new run from its weights use '
            f'--cfg-options load_from={path} without --resume. Nothing was loaded.')


def check_load_from(runner, path: str) -> None:
    """A ``load_from`` checkpoint (a fine-tuning start), which mmengine loads non-strictly:
    what does not fit the model is logged (mmengine prints it outside the run's log), and a
    checkpoint that fits less than half of the backbone's values (another architecture, whose
    few matches are coincidences of width) is refused."""
    what = 'load_from checkpoint'
    # mmengine's load_from reads 'state_dict', or else the top level: the same here
    state = state_dict_of(load_checkpoint_file(path, what, mmap=True), f'{what} {path}',
                          ('state_dict', ))
    model_state = bare_model(runner).state_dict()
    result = compare_state_dicts(model_state, state)
    mismatch = describe_mismatch(result)
    if not mismatch:
        return
    unfit = set(result['missing']) | {s.split(':')[0] for s in result['shape']}
    # the backbone's values; a model without a backbone (VOLO's timm model) by all of them
    sizes = {k: v.numel() for k, v in model_state.items() if k.startswith('backbone.')} or {
        k: v.numel() for k, v in model_state.items()}
    fit = sum(n for k, n in sizes.items() if k not in unfit) / max(sum(sizes.values()), 1)
    if sizes and fit < 0.5:
        raise CheckpointError(
            f'{what} {path} does not fit the model of this config: {fit:.0%} of the backbone\'s '
            f'values would load ({mismatch}). Use a checkpoint of this architecture (convert '
            'official releases with tools/model_converters/), or the config it was trained '
            'with. Nothing was loaded.')
    runner.logger.warning(
        f'{what} {path} does not fit the model of this config ({mismatch}); these weights '
        'keep their initialisation unless the model resizes them as it loads (the position '
        'tables of ViT and VOLO): mmengine loads load_from non-strictly.')


def latest_checkpoint_in(work_dir: str, logger, out_dir: Optional[str] = None
                         ) -> Optional[str]:
    """The checkpoint that ``work_dir/last_checkpoint`` names (None without that file).

    The file holds the path the run saved to. A work dir moved or copied since names a
    checkpoint elsewhere (another run's, or none); the file of the same name in ``work_dir``
    is taken instead. A name that exists nowhere, or an empty file, is refused with the work
    dir's checkpoints listed (not a start from epoch 0, whose rotation would remove them).
    Checkpoints under ``out_dir`` (``default_hooks.checkpoint.out_dir``) are outside the work
    dir by design and taken as they are.
    """
    if not osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        return None
    path = find_latest_checkpoint(work_dir)
    where = f'--resume: {osp.join(work_dir, "last_checkpoint")} names {path}'
    if not path:  # a write cut short by mmengine's CheckpointHook, or a crashed file system
        where, why = f'--resume: {osp.join(work_dir, "last_checkpoint")} is empty', ''
    elif osp.realpath(osp.dirname(path)) == osp.realpath(work_dir):
        if osp.isfile(path):
            return path
        why = ', which does not exist (removed?)'
    else:
        if out_dir and osp.isfile(path) and osp.realpath(path).startswith(
                osp.realpath(out_dir) + os.sep):
            return path  # default_hooks.checkpoint.out_dir: saved elsewhere by design
        local = osp.join(work_dir, osp.basename(path))
        if osp.isfile(local):
            logger.warning(f'{where}, outside this work dir (moved or copied?); resuming from '
                           f'{local}, the checkpoint of that name here.')
            return local
        if osp.isfile(path):
            return path
        why = ', which does not exist (a moved work dir?)'
    found = _checkpoints_in(work_dir)
    raise CheckpointError(f'{where}{why}. Checkpoints in {work_dir}: ' + (
        _resume_one_of(work_dir, found) if found else 'none; train without --resume'))


def _checkpoints_in(folder: str) -> list:
    return sorted(f for f in os.listdir(folder) if f.endswith('.pth'))


def _resume_one_of(folder: str, names: list) -> str:
    """The checkpoints ``names`` of ``folder``, and the newest that can be resumed (a
    ``best_*`` checkpoint holds no optimizer state)."""
    newest = max([f for f in names if not f.startswith('best_')] or names,
                 key=lambda f: osp.getmtime(osp.join(folder, f)))
    return (f'{", ".join(names)}; resume one by its path, e.g. the newest: --resume '
            f'{osp.join(folder, newest)}')


def check_optimizer_groups(optimizer, saved: Optional[dict], path) -> None:
    """Refuse, before anything is loaded, an optimizer state whose parameter groups do not
    fit ``optimizer`` (torch would only say "different number of parameter groups" once the
    weights are in). A state of one group per parameter fits the merged groups of
    ``MergedGroupsOptimWrapperConstructor``, which merges it as it loads."""
    groups = (saved or {}).get('param_groups') if isinstance(saved, dict) else None
    if not isinstance(optimizer, torch.optim.Optimizer) or not groups:
        return
    sizes = [len(g['params']) for g in optimizer.param_groups]
    if [len(g['params']) for g in groups] == sizes or (
            [len(g['params']) for g in merge_param_groups(groups)] == sizes):
        return
    raise CheckpointError(
        f'resume checkpoint {path}: its optimizer state has {len(groups)} parameter group(s) '
        f'and this config\'s optimizer {len(sizes)}, of other sizes (optim_wrapper.constructor '
        'or paramwise_cfg differ from the run that saved it; the paper configs use '
        "constructor='MergedGroupsOptimWrapperConstructor'). Resume with the config the "
        'checkpoint was trained with; to start a new run from its weights use --cfg-options '
        f'load_from={path} without --resume. Nothing was loaded.')


def _warn_a_changed_lr(runner, saved: Optional[dict], path) -> None:
    """mmengine (as timm) resumes the optimizer's and the schedulers' state, base learning
    rates included: a learning rate changed in the config (or by ``--auto-scale-lr`` on
    another number of GPUs) has no effect, which is said here rather than left silent."""
    optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
    groups = (saved or {}).get('param_groups') if isinstance(saved, dict) else None
    if not isinstance(optimizer, torch.optim.Optimizer) or not groups:
        return

    def base_lr(groups):
        return max(g.get('initial_lr', g.get('lr', 0.0)) for g in groups)
    new, old = base_lr(optimizer.param_groups), base_lr(groups)
    if abs(new - old) > 1e-6 * max(abs(old), 1e-12):
        runner.logger.warning(
            f'--resume: this config\'s learning rate ({new:.6g}) differs from that of {path} '
            f'({old:.6g}); the resumed run continues the checkpoint\'s optimizer state and '
            f'learning-rate schedule, with {old:.6g}: the config\'s value has no effect.')


def _allow_a_new_loss_scale(runner, checkpoint, path) -> None:
    """A run saved without loss scaling (``--amp bf16``: its scaler is off and saves an empty
    state) resumed with fp16's dynamic loss scaling (``--amp``, e.g. on GPUs without bf16):
    torch's ``GradScaler`` refuses the empty state, so the scaler starts afresh, as in a new
    fp16 run, and the rest (weights, optimizer state, schedule) resumes."""
    scaler = getattr(runner.optim_wrapper, 'loss_scaler', None)
    saved = (checkpoint.get('optimizer') or {}) if isinstance(checkpoint, dict) else {}
    if scaler is None or not scaler.is_enabled() or saved.get('loss_scaler', None) != {}:
        return
    runner.logger.warning(
        f'resume checkpoint {path} was trained without loss scaling (--amp bf16) and this run '
        'scales the loss (--amp, fp16): the loss scale starts afresh.')
    load = scaler.load_state_dict
    scaler.load_state_dict = lambda state: load(state) if state else None

"""``runner_type='HATRunner'``: puts HAT on any mmpretrain classifier config.

mmengine refuses a top-level key defined by two sibling ``_base_`` files, so the HAT overlay
(``configs/_base_/hat.py``) cannot redefine ``model`` or ``custom_hooks`` next to an
mmpretrain recipe. It sets ``runner_type='HATRunner'`` and a top-level ``hat`` dict instead,
and :func:`apply_hat` rewrites the merged config before the runner is built:

- ``model.type``: ``X`` -> ``HATX`` (``ImageClassifier`` -> ``HATImageClassifier``,
  ``TimmClassifier``, ``VOLOClassifier``, ``DistilledImageClassifier`` likewise; HAT types
  are kept), looked up in mmpretrain's ``MODELS``, so a new classifier family only needs its
  ``HAT`` subclass registered; ``model.hat`` <- ``hat`` (fields already set in ``model.hat``
  win);
- ``custom_hooks`` gets a ``HATPhaseHook``, a ``NonFiniteCheckHook`` and an ``RNGStateHook``
  unless it has them (the recipe's hooks are kept); mmengine's ``CheckpointHook`` becomes
  ``SafeCheckpointHook`` (same options; atomic saves, rotation after the new checkpoint);
- ``model_wrapper_cfg`` defaults to ``HATDistributedDataParallel``;
- a top-level ``compile`` (mmengine's switch, which would ``torch.compile`` the whole
  ``train_step``, HAT loop and optimizer step included) moves to ``model.compile``, which
  compiles the modules the K passes call (:mod:`hat_mm.models.compile`).

The rewritten config is the one dumped to the work dir, so it shows what actually ran.
"""
import copy
import io
from contextlib import nullcontext, redirect_stdout

from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapperDict
from mmengine.registry import RUNNERS
from mmengine.runner import EpochBasedTrainLoop, Runner

from .resume import prepare_resume

HAT_WRAPPERS = ('HATDistributedDataParallel', )
# added to custom_hooks unless there: the phase switch, and what long runs need
RUN_HOOKS = ('HATPhaseHook', 'NonFiniteCheckHook', 'RNGStateHook')


def _short_type(type_name) -> str:
    return type_name.split('.')[-1] if isinstance(type_name, str) else type_name.__name__


def hat_classifier_type(type_name) -> str:
    """``HAT`` + the classifier's type (kept when it already is a HAT type), which must be
    registered in mmpretrain's ``MODELS``."""
    from mmpretrain.registry import MODELS
    short = _short_type(type_name)
    hat_type = short if short.startswith('HAT') else 'HAT' + short
    if MODELS.get(hat_type) is None:
        raise TypeError(
            f'HAT cannot train model.type={short!r}: no {hat_type!r} is registered. A new '
            f'classifier family needs `@MODELS.register_module() class {hat_type}'
            f'(HATClassifierMixin, {short})` (hat_mm/models/hat_classifier.py).')
    return hat_type


def apply_hat(cfg: Config) -> Config:
    """Return a copy of ``cfg`` set up for HAT training (see the module docstring)."""
    cfg = copy.deepcopy(cfg)
    model = cfg.get('model')
    if model is None:
        raise KeyError('The config has no `model`; HAT needs an mmpretrain classifier.')
    model['type'] = hat_classifier_type(model.get('type', 'ImageClassifier'))
    for where, holder in (('hat', cfg), ('model.hat', model)):
        if 'hat' in holder and holder['hat'] is None:
            raise ValueError(
                f'{where}=None would train with the default HAT settings (K=3 for 200 epochs), '
                'not without HAT. To train without it: --cfg-options hat.adv_epochs=0 '
                'hat.kl_after_adv=False (a plain classification step); to use the defaults, '
                f'leave {where} out.')
    hat = dict(cfg.get('hat') or {})
    hat.update(model.get('hat') or {})
    model['hat'] = hat

    top_compile = cfg.get('compile')
    if top_compile not in (None, False):
        if model.get('compile') not in (None, False) and model['compile'] != top_compile:
            raise ValueError(f'compile={top_compile!r} and model.compile='
                             f"{model['compile']!r} disagree; set only model.compile.")
        model['compile'] = top_compile
    if 'compile' in cfg:
        cfg.pop('compile')

    hooks = list(cfg.get('custom_hooks') or [])
    present = {_short_type(h.get('type', '')) for h in hooks}
    hooks += [ConfigDict(type=t) for t in RUN_HOOKS if t not in present]
    cfg.custom_hooks = hooks
    default_hooks = cfg.setdefault('default_hooks', ConfigDict())
    checkpoint = default_hooks.setdefault('checkpoint', ConfigDict(interval=1))
    if checkpoint is not None and _short_type(checkpoint.get('type', 'CheckpointHook')) \
            == 'CheckpointHook':
        checkpoint['type'] = 'SafeCheckpointHook'

    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = ConfigDict(type='HATDistributedDataParallel')
    elif _short_type(wrapper.get('type', 'MMDistributedDataParallel')) not in HAT_WRAPPERS:
        raise TypeError(
            f"model_wrapper_cfg.type={wrapper.get('type')!r} would bypass the HAT step under "
            "distributed training; use model_wrapper_cfg=dict(type='HATDistributedDataParallel')"
            ' (keyword arguments such as find_unused_parameters go beside it).')
    return cfg


def check_loop_lengths(loop, validate: bool = True) -> None:
    """Refuse ``train_cfg.max_epochs`` / ``max_iters`` below 1 (mmengine trains nothing
    and exits 0) and ``val_interval`` below 1 (mmengine fails with a ZeroDivisionError only
    after the first epoch)."""
    for key in ('max_epochs', 'max_iters') + (('val_interval', ) if validate else ()):
        value = getattr(loop, f'_{key}', getattr(loop, key, None))
        if isinstance(value, int) and value < 1:
            fix = ('validate every N epochs (or iterations) with N >= 1, or train without '
                   'validation: tools/train.py --no-validate' if key == 'val_interval' else
                   'give the length of training, >= 1')
            raise ValueError(f'train_cfg.{key}={value}: {fix}.')


def check_train_batches(dataloader) -> None:
    """Refuse a training set smaller than one batch per process: with ``drop_last`` (the
    paper configs drop the last incomplete batch, as the official loader does) an epoch then
    has no iteration, which mmengine reports only as ``epoch_length ... got 0``."""
    if dataloader is None or not hasattr(dataloader, '__len__') or len(dataloader) > 0:
        return
    sampler = getattr(dataloader, 'sampler', None)
    per_process = len(sampler) if hasattr(sampler, '__len__') else None
    images = len(dataloader.dataset) if hasattr(dataloader.dataset, '__len__') else None
    batch = dataloader.batch_size
    raise ValueError(
        f'train_dataloader gives no batch per epoch: {images} training images'
        + (f' ({per_process} per process)' if per_process is not None else '')
        + f' are fewer than one batch of train_dataloader.batch_size={batch}'
        + (' with train_dataloader.drop_last=True (the paper configs drop the last '
           'incomplete batch, as the official loader does)' if dataloader.drop_last else '')
        + '. Use more images, a smaller train_dataloader.batch_size'
        + (', or --cfg-options train_dataloader.drop_last=False' if dataloader.drop_last
           else '') + '.')


def schedule_outlasting_run(cfg, max_epochs: int) -> list:
    """``param_scheduler.<i>.<key>=<epoch>`` of every epoch-based LR schedule that ends
    after ``max_epochs`` (``TimmCosineLR``'s ``cosine_epochs``, mmengine's ``end``)."""
    schedulers = cfg.get('param_scheduler') or []
    out = []
    for i, sched in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        key = 'cosine_epochs' if 'cosine_epochs' in sched else 'end'
        end = sched.get(key)
        if sched.get('by_epoch', True) and isinstance(end, (int, float)) and end > max_epochs:
            out.append(f'param_scheduler.{i}.{key}={end}')
    return out


@RUNNERS.register_module()
class HATRunner(Runner):
    """mmengine ``Runner`` that applies :func:`apply_hat` to its config, checks that an
    epoch has a training batch, and checks the checkpoint it resumes from
    (:func:`hat_mm.engine.resume.prepare_resume`)."""

    @classmethod
    def from_cfg(cls, cfg: Config) -> Runner:
        return super().from_cfg(apply_hat(cfg))

    def build_train_loop(self, loop):
        loop = super().build_train_loop(loop)
        check_train_batches(getattr(loop, 'dataloader', None))
        check_loop_lengths(loop, validate=self._val_loop is not None)
        late = schedule_outlasting_run(self.cfg, loop.max_epochs) if isinstance(
            loop, EpochBasedTrainLoop) else []
        if late:
            self.logger.warning(
                f'the LR schedule outlasts this run of train_cfg.max_epochs={loop.max_epochs}: '
                f"{', '.join(late)}. The config file's values stay when --cfg-options changes "
                'train_cfg.max_epochs; set these too for a shorter run.')
        return loop

    def scale_lr(self, optim_wrapper, auto_scale_lr=None) -> None:
        """mmengine's linear scaling (``auto_scale_lr`` / ``--auto-scale-lr``), applied to
        the optim wrapper's base settings too: mmengine scales only the optimizer's groups,
        and the schedulers then step the base settings from the unscaled LR, which the log
        shows as ``base_lr`` beside the scaled ``lr``."""
        wrappers = list(optim_wrapper.values()) if isinstance(
            optim_wrapper, OptimWrapperDict) else [optim_wrapper]
        before = [[g['lr'] for g in w.optimizer.param_groups] for w in wrappers]
        super().scale_lr(optim_wrapper, auto_scale_lr)
        for wrapper, lrs in zip(wrappers, before):
            base = getattr(wrapper, 'base_param_settings', None)
            scaled = [(g['lr'], lr) for g, lr in zip(wrapper.optimizer.param_groups, lrs) if lr]
            if base is not None and scaled:
                base['lr'] = base['lr'] * scaled[0][0] / scaled[0][1]

    def load_or_resume(self) -> None:
        prepare_resume(self)
        # mmengine prints "Loads checkpoint by local backend from path: ..." from every
        # process (print, not its logger); rank 0's copy is the one to read
        quiet = redirect_stdout(io.StringIO()) if self.rank > 0 else nullcontext()
        with quiet:
            super().load_or_resume()

"""mmpretrain classifiers whose ``train_step`` is the HAT update.

A config turns HAT on by changing the classifier's type and adding a ``hat`` dict, everything
else (backbone, neck, head, loss, data preprocessor and its mixup/cutmix) stays as inherited:

    model = dict(type='HATImageClassifier', hat=dict(adv_iters=3, adv_eps=2 / 255, ...))

Checkpoint keys are those of the plain classifier (``backbone.*``, ``head.*``), so a HAT
checkpoint loads wherever a plain mmpretrain checkpoint does.
"""
import warnings
from typing import Callable, Dict, List, Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmpretrain.models import ImageClassifier, TimmClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..hat_update import HATConfig, hat_backward
from .compile import compile_kwargs, compile_modules
from .fused_window_attention import use_fused_window_attention


class HATClassifierMixin:
    """Adds the HAT training step to an mmpretrain classifier.

    The phase (adversarial with K = ``hat.adv_iters`` passes, or K = 1 afterwards) is set by
    :class:`hat_mm.engine.HATPhaseHook` through :meth:`set_hat_phase`.

    Args (keyword arguments added to those of the classifier):
        hat (dict): fields of :class:`hat_mm.hat_update.HATConfig`; validated when the model
            is built.
        kl_loss (dict): the symmetric-KL loss of the update, default
            ``dict(type='SymmetricKLLoss')`` (weighted by ``hat.adv_kl_weight``).
        compile (bool | dict): ``torch.compile`` the modules of :meth:`hat_compile_modules`
            (True, or a dict of ``torch.compile`` arguments, and ``devices``: the device
            types to compile on, eager elsewhere with one log line); see
            :mod:`hat_mm.models.compile`. Default None (eager).
        channels_last (bool): keep 4-D weights and the training inputs in channels-last
            memory format. Default False.
    """

    def __init__(self, *args, hat: Optional[Union[dict, HATConfig]] = None,
                 kl_loss: dict = dict(type='SymmetricKLLoss'),
                 compile: Union[None, bool, dict] = None, channels_last: bool = False,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.hat = hat if isinstance(hat, HATConfig) else HATConfig.from_cfg(hat)
        self.kl_loss = MODELS.build(kl_loss)
        self.hat_adversarial = True
        self._hat_phase_managed = False
        if not isinstance(channels_last, bool):
            raise TypeError(f'model.channels_last={channels_last!r}: expected True or False')
        self.hat_channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
        compile_cfg = compile_kwargs(compile)
        self.hat_compiled = False
        self._hat_compile_pending = None  # (torch.compile kwargs, device types)
        if compile_cfg is not None:
            devices = compile_cfg.pop('devices', None)
            if devices is None:
                self._hat_compile(compile_cfg)
            else:  # decided at the first forward, on the device the model runs on
                self._hat_compile_pending = (compile_cfg, devices)

    def _hat_compile(self, kwargs: dict) -> None:
        modules = self.hat_compile_modules()
        args = ', '.join(f'{k}={v!r}' for k, v in kwargs.items())
        print_log(f'model.compile: torch.compile({args}) of '
                  f'{", ".join(type(m).__name__ for m in modules)}; the first iteration '
                  'compiles (minutes on a GPU), the ones after it do not.', logger='current')
        compile_modules(self, modules, kwargs)
        self.hat_compiled = True
        self.hat_compile_kwargs = dict(kwargs)  # for modules built later (a teacher)

    def _hat_resolve_compile(self, device: torch.device) -> None:
        """Compile now if ``model.compile.devices`` has ``device``'s type, else log once and
        stay eager."""
        kwargs, devices = self._hat_compile_pending
        self._hat_compile_pending = None
        if device.type in devices:
            self._hat_compile(kwargs)
        else:
            print_log(f'model.compile is set for {list(devices)}: this run is on '
                      f'{device.type}, so the model runs eager (not compiled).',
                      logger='current')

    def forward(self, inputs, *args, **kwargs):
        if self._hat_compile_pending is not None and isinstance(inputs, torch.Tensor):
            self._hat_resolve_compile(inputs.device)
        return super().forward(inputs, *args, **kwargs)

    def hat_compile_modules(self) -> List[torch.nn.Module]:
        """The submodules that ``compile`` compiles: those the forward calls."""
        names = ('backbone', 'neck', 'head')
        return [m for m in (getattr(self, n, None) for n in names)
                if isinstance(m, torch.nn.Module)]

    def set_hat_phase(self, adversarial: bool) -> None:
        self.hat_adversarial = bool(adversarial)
        self._hat_phase_managed = True

    # -- what a classifier family provides -----------------------------------------------
    def hat_classification_loss(self, output, data_samples: List[DataSample],
                                inputs: torch.Tensor, forward_context: Optional[Callable] = None
                                ) -> Dict[str, torch.Tensor]:
        """``CE_k``: the configured loss of ``output`` (the ``mode='tensor'`` forward of
        ``inputs = x + delta_k``); a dict with key ``loss``, other keys are logged.
        ``forward_context()`` is the optim wrapper's context (autocast) for any extra
        forward the loss runs (a distillation teacher)."""
        raise NotImplementedError

    def hat_kl_logits(self, output) -> torch.Tensor:
        """The logits of ``output`` that the symmetric-KL term compares."""
        return output

    def loss(self, inputs, data_samples):
        if self.training:
            raise RuntimeError(
                f'{type(self).__name__}.loss() was called in training mode: a wrapper ran the '
                'plain training step instead of the HAT step (mmengine\'s '
                'MMDistributedDataParallel does that). Set '
                "model_wrapper_cfg=dict(type='HATDistributedDataParallel').")
        return super().loss(inputs, data_samples)

    # -- the training step ----------------------------------------------------------------
    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, torch.Tensor]:
        return self.hat_train_step(data, optim_wrapper, runner_model=self)

    def hat_train_step(self, data, optim_wrapper: OptimWrapper,
                       runner_model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        """One HAT iteration. ``runner_model`` is ``self`` or the DDP wrapper around it."""
        if not self._hat_phase_managed and self.hat.adv_epochs > 0:
            self._hat_phase_managed = True  # warn once
            warnings.warn('HATPhaseHook is not in custom_hooks: the adversarial phase will '
                          'not end at hat.adv_epochs. Use the overlay configs/_base_/hat.py '
                          "(runner_type='HATRunner' adds the hook) or add "
                          "custom_hooks=[dict(type='HATPhaseHook')].")
        with optim_wrapper.optim_context(runner_model):
            data = self.data_preprocessor(data, True)
        inputs, data_samples = data['inputs'], data['data_samples']
        if self._hat_compile_pending is not None:
            self._hat_resolve_compile(inputs.device)
        if self.hat_channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)

        adversarial = self.hat_adversarial and self.hat.adv_epochs > 0
        num_iters = self.hat.adv_iters if adversarial else 1
        with_kl = adversarial or self.hat.kl_after_adv
        extra_logs: Dict[str, torch.Tensor] = {}

        def forward(x):
            with optim_wrapper.optim_context(runner_model):
                return runner_model(x, mode='tensor')

        def clean_forward(x):
            with optim_wrapper.optim_context(self):
                return self(x, mode='tensor')

        def classification_loss(output, x):
            losses = self.hat_classification_loss(
                output, data_samples, x, lambda: optim_wrapper.optim_context(self))
            for name, value in losses.items():
                if name != 'loss' and name not in extra_logs:
                    extra_logs[name] = value.detach()
            return losses['loss']

        def backward(loss, last):
            loss = optim_wrapper.scale_loss(loss)  # gradient accumulation, if configured
            if last:
                optim_wrapper.backward(loss)  # counts the iteration
            else:
                scaler = getattr(optim_wrapper, 'loss_scaler', None)
                (scaler.scale(loss) if scaler is not None else loss).backward()

        no_sync = getattr(runner_model, 'no_sync', None)
        log_vars, _ = hat_backward(
            forward, clean_forward, classification_loss, inputs, backward, self.hat,
            num_iters=num_iters, with_kl=with_kl, no_sync=no_sync, logits_of=self.hat_kl_logits,
            kl_loss=self.kl_loss)
        if optim_wrapper.should_update():
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        log_vars.update(extra_logs)
        return log_vars


@MODELS.register_module()
class HATImageClassifier(HATClassifierMixin, ImageClassifier):
    """:class:`mmpretrain.models.ImageClassifier` trained with HAT.

    Args:
        fused_window_attention (bool): run mmpretrain's Swin window attention through
            ``scaled_dot_product_attention`` (:mod:`hat_mm.models.fused_window_attention`);
            same function and state dict. Default False.
        hat, compile, channels_last: see :class:`HATClassifierMixin`. Other arguments are
            those of ``ImageClassifier``.
    """

    def __init__(self, *args, fused_window_attention: bool = False, **kwargs):
        super().__init__(*args, **kwargs)  # compiling is lazy: the swap below is traced
        if fused_window_attention:
            use_fused_window_attention(self)

    def hat_classification_loss(self, output, data_samples, inputs, forward_context=None):
        return self.head._get_loss(output.float(), data_samples)


@MODELS.register_module()
class HATTimmClassifier(HATClassifierMixin, TimmClassifier):
    """:class:`mmpretrain.models.TimmClassifier` (any timm model) trained with HAT."""

    def hat_compile_modules(self):
        return [self.model]

    def hat_classification_loss(self, output, data_samples, inputs, forward_context=None):
        return self._get_loss(output.float(), data_samples)

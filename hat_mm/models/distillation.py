"""DeiT distillation (Touvron et al., ICML 2021) with and without HAT (SPEC section 1,
knowledge-distillation variant; the official HAT ``train_kd.py``).

The student is mmpretrain's ``DistilledVisionTransformer`` + ``DeiTClsHead``. That head
averages its two outputs in every mode (and warns that mmpretrain cannot train it), so the
classifiers here call its two linear layers themselves: in training, ``mode='tensor'``
returns ``(class-token logits, distillation-token logits)``; in evaluation it is the head's
average, DeiT's prediction.

Loss (DeiT's ``DistillationLoss``): ``(1 - a) * CE(cls, y) + a * D(dist, teacher(x))`` with
``CE`` the head's configured loss (soft targets of mixup/cutmix, label smoothing), hard
distillation ``D = CE(dist, argmax teacher)``, soft ``D = KL(log_softmax(dist / tau) ||
log_softmax(teacher / tau), reduction='sum', log_target=True) * tau^2 / numel(dist)``,
defaults ``a = 0.5``, ``tau = 1``. Under HAT the loss is computed on ``x + delta_k`` and
the teacher sees the same perturbed input (as in ``train_kd.py``, where the criterion is
called with ``input + delta``); ``KL_k`` uses the class-token logits.

The teacher (RegNetY-16GF in DeiT; any mmpretrain / timm classifier config and checkpoint):
built from ``distillation.teacher`` (a model config) or ``distillation.teacher_config`` (a
config file; its ``model``), loaded from ``distillation.teacher_checkpoint``, frozen
(``requires_grad=False``), always in eval mode. It is NOT a submodule: it is not in
``parameters()`` (so never in the optimizer nor in DDP), not in ``state_dict()`` (checkpoints
hold the student only; resume and ``tools/test.py`` need no teacher) and is not copied by
the EMA hook. It is built lazily at the first training iteration, so evaluation and
checkpoint conversion never build or load it, and moved to the input's device when used.
"""
import argparse
import copy
import os.path as osp
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from ..utils import load_weights_strict
from .hat_classifier import HATClassifierMixin

DISTILLATION_DEFAULTS = dict(type='hard', alpha=0.5, tau=1.0, teacher=None,
                             teacher_config=None, teacher_checkpoint=None)


class _TeacherHolder:
    """Keeps the teacher out of the student's module tree; shared by deep copies (EMA)."""

    def __init__(self):
        self.module: Optional[torch.nn.Module] = None

    def __deepcopy__(self, memo):
        return self


def _load_teacher_weights(teacher: torch.nn.Module, path: str) -> None:
    load_weights_strict(teacher, path, 'teacher checkpoint', allow=[argparse.Namespace],
                        fix='Check model.distillation.teacher / teacher_config.')


@MODELS.register_module()
class DistilledImageClassifier(ImageClassifier):
    """``ImageClassifier`` with a distillation token trained with DeiT's distillation loss.

    Args:
        distillation (dict): ``type`` ('hard', 'soft' or 'none'), ``alpha`` (0.5), ``tau``
            (1.0), ``teacher`` (model config) or ``teacher_config`` (config file), and
            ``teacher_checkpoint`` (required for 'hard'/'soft' when training).
        Other arguments: those of ``ImageClassifier`` (the head must be ``DeiTClsHead``).
    """

    def __init__(self, *args, distillation: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        layers = getattr(self.head, 'layers', None)
        if layers is None or not hasattr(layers, 'head_dist'):
            raise TypeError(f'{type(self).__name__} needs a head with a distillation layer '
                            f'(DeiTClsHead), got {type(self.head).__name__}')
        cfg = dict(DISTILLATION_DEFAULTS)
        unknown = sorted(set(distillation or {}) - set(cfg))
        if unknown:
            raise ValueError(f'unknown distillation fields {unknown}; valid: {sorted(cfg)}')
        cfg.update(distillation or {})
        if cfg['type'] not in ('hard', 'soft', 'none'):
            raise ValueError(f"distillation.type must be 'hard', 'soft' or 'none', got "
                             f"{cfg['type']!r}")
        if not 0 <= cfg['alpha'] <= 1 or cfg['tau'] <= 0:
            raise ValueError('distillation.alpha must be in [0, 1] and tau > 0')
        if cfg['type'] != 'none' and (cfg['teacher'] is None) == (cfg['teacher_config'] is None):
            raise ValueError('distillation needs exactly one of teacher (a model config) and '
                             'teacher_config (a config file)')
        self.distillation = cfg
        self._teacher = _TeacherHolder()
        self._teacher_context: Callable = nullcontext

    # -- teacher --------------------------------------------------------------------------
    @property
    def teacher(self) -> torch.nn.Module:
        """The frozen teacher (built and loaded on first use)."""
        if self._teacher.module is None:
            self._teacher.module = self._build_teacher()
        return self._teacher.module

    def _build_teacher(self) -> torch.nn.Module:
        cfg = self.distillation
        if cfg['teacher_checkpoint'] is None:
            raise ValueError('distillation needs a trained teacher: set '
                             'model.distillation.teacher_checkpoint')
        if cfg['teacher_config'] is not None:
            from mmengine.config import Config
            model_cfg = Config.fromfile(cfg['teacher_config']).model
        else:
            model_cfg = copy.deepcopy(cfg['teacher'])
        teacher = MODELS.build(model_cfg)
        _load_teacher_weights(teacher, osp.expanduser(cfg['teacher_checkpoint']))
        teacher.requires_grad_(False)
        return teacher.eval()

    def set_teacher(self, teacher: torch.nn.Module) -> None:
        """Use an already built teacher (frozen and put in eval mode here)."""
        teacher.requires_grad_(False)
        self._teacher.module = teacher.eval()

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        teacher = self.teacher
        param = next(teacher.parameters(), None)
        if param is not None and param.device != inputs.device:
            teacher.to(inputs.device)
        teacher.eval()
        with self._teacher_context():
            if isinstance(teacher, ImageClassifier) or hasattr(teacher, 'data_preprocessor'):
                out = teacher(inputs, mode='tensor')
            else:
                out = teacher(inputs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.float()

    # -- forward / loss -------------------------------------------------------------------
    def forward_distilled(self, inputs: torch.Tensor):
        """``(class-token logits, distillation-token logits)``."""
        feats = self.extract_feat(inputs)
        cls_token, dist_token = self.head.pre_logits(feats)
        return self.head.layers.head(cls_token), self.head.layers.head_dist(dist_token)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'tensor' and self.training:
            return self.forward_distilled(inputs)
        return super().forward(inputs, data_samples, mode)

    def distillation_losses(self, output, data_samples: List, inputs: torch.Tensor
                            ) -> Dict[str, torch.Tensor]:
        cls, dist = output
        base = self.head._get_loss(cls.float(), data_samples)['loss']
        cfg = self.distillation
        if cfg['type'] == 'none':
            return dict(loss=base)
        teacher = self.teacher_logits(inputs)
        dist = dist.float()
        if cfg['type'] == 'hard':
            kd = F.cross_entropy(dist, teacher.argmax(dim=1))
        else:
            T = cfg['tau']
            kd = F.kl_div(F.log_softmax(dist / T, dim=1), F.log_softmax(teacher / T, dim=1),
                          reduction='sum', log_target=True) * (T * T) / dist.numel()
        a = cfg['alpha']
        return dict(loss=base * (1 - a) + kd * a, loss_cls_base=base.detach(),
                    loss_distill=kd.detach())

    def loss(self, inputs: torch.Tensor, data_samples: List):
        if self.training:
            return self.distillation_losses(self.forward_distilled(inputs), data_samples,
                                            inputs)
        return super().loss(inputs, data_samples)


@MODELS.register_module()
class HATDistilledImageClassifier(HATClassifierMixin, DistilledImageClassifier):
    """:class:`DistilledImageClassifier` trained with HAT (``train_kd.py``): ``CE_k`` is the
    distillation loss on ``x + delta_k`` with the teacher fed ``x + delta_k``; ``KL_k`` on the
    class-token logits."""

    def hat_train_step(self, data, optim_wrapper, runner_model):
        # the teacher runs inside the optim wrapper's context (autocast under AMP)
        self._teacher_context = lambda: optim_wrapper.optim_context(self)
        try:
            return super().hat_train_step(data, optim_wrapper, runner_model)
        finally:
            self._teacher_context = nullcontext

    def hat_classification_loss(self, output, data_samples, inputs):
        return self.distillation_losses(output, data_samples, inputs)

    def hat_kl_logits(self, output) -> torch.Tensor:
        return output[0] if isinstance(output, (tuple, list)) else output

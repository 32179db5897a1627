"""DeiT distillation (Touvron et al., ICML 2021) with and without HAT (the knowledge-distillation
variant of docs/hat_update.md; the official HAT ``train_kd.py``).

The student is mmpretrain's ``DistilledVisionTransformer`` + ``DeiTClsHead``. That head
averages its two outputs in every mode (and warns that mmpretrain cannot train it), so the
classifiers here call its two linear layers themselves: in training, ``mode='tensor'``
returns ``(class-token logits, distillation-token logits)``; in evaluation it is the head's
average, DeiT's prediction.

Loss: :class:`~hat_mm.models.losses.DistillationLoss` (``model.distillation_loss``; DeiT's
hard distillation, alpha 0.5, tau 1.0 by default) of the head's configured loss of the
class-token logits and the distillation-token logits against the teacher's. Under HAT the
loss is computed on ``x + delta_k`` and the teacher sees the same perturbed input (as in
``train_kd.py``, where the criterion is called with ``input + delta``); ``KL_k`` uses the
class-token logits.

The teacher (RegNetY-16GF in DeiT; any mmpretrain / timm classifier): ``model.teacher =
dict(model=<model config> or config=<config file>, checkpoint=<path>)``, frozen
(``requires_grad=False``), always in eval mode, run in the optim wrapper's autocast context
during training. It is NOT a submodule: not in ``parameters()`` (so never in the optimizer
nor in DDP), not in ``state_dict()`` (checkpoints hold the student only; resume and
``tools/test.py`` need no teacher), not copied by the EMA hook. It is built at the first
training iteration, so evaluation and checkpoint conversion never build or load it, and
moved to the input's device when used. Under HAT it follows the student's fast paths
(``model.channels_last``, ``model.compile``): it runs K times per step.
"""
import argparse
import copy
import os.path as osp
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional

import torch
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from ..utils import load_weights_strict
from .hat_classifier import HATClassifierMixin


class _TeacherHolder:
    """Keeps the teacher out of the student's module tree; shared by deep copies (EMA)."""

    def __init__(self):
        self.module: Optional[torch.nn.Module] = None

    def __deepcopy__(self, memo):
        return self


def _load_teacher_weights(teacher: torch.nn.Module, path: str) -> None:
    load_weights_strict(teacher, path, 'teacher checkpoint', allow=[argparse.Namespace],
                        fix='Check model.teacher.model / model.teacher.config.')


@MODELS.register_module()
class DistilledImageClassifier(ImageClassifier):
    """``ImageClassifier`` with a distillation token trained with DeiT's distillation loss.

    Args:
        distillation_loss (dict): a :class:`~hat_mm.models.losses.DistillationLoss` config
            (``distillation_type`` 'hard' / 'soft' / 'none', ``alpha``, ``tau``).
        teacher (dict): ``model`` (a model config) or ``config`` (a config file, its
            ``model``), and ``checkpoint``; needed for 'hard'/'soft' when training.
        Other arguments: those of ``ImageClassifier`` (the head must be ``DeiTClsHead``).
    """

    def __init__(self, *args, distillation_loss: dict = dict(type='DistillationLoss'),
                 teacher: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        layers = getattr(self.head, 'layers', None)
        if layers is None or not hasattr(layers, 'head_dist'):
            raise TypeError(f'{type(self).__name__} needs a head with a distillation layer '
                            f'(DeiTClsHead), got {type(self.head).__name__}')
        self.distillation_loss = MODELS.build(distillation_loss)
        teacher = dict(teacher or {})
        unknown = sorted(set(teacher) - {'model', 'config', 'checkpoint'})
        if unknown:
            raise ValueError(f'unknown model.teacher fields {unknown}; valid: model, config, '
                             'checkpoint')
        if self.distillation_loss.distillation_type != 'none' and \
                ('model' in teacher) == ('config' in teacher):
            raise ValueError('distillation needs exactly one of model.teacher.model (a model '
                             'config) and model.teacher.config (a config file)')
        self.teacher_cfg = teacher
        self._teacher = _TeacherHolder()

    # -- teacher --------------------------------------------------------------------------
    @property
    def teacher(self) -> torch.nn.Module:
        """The frozen teacher (built and loaded on first use)."""
        if self._teacher.module is None:
            self._teacher.module = self._build_teacher()
        return self._teacher.module

    def _build_teacher(self) -> torch.nn.Module:
        cfg = self.teacher_cfg
        if cfg.get('checkpoint') is None:
            raise ValueError('distillation needs a trained teacher: set '
                             'model.teacher.checkpoint')
        if cfg.get('config') is not None:
            from mmengine.config import Config
            model_cfg = Config.fromfile(cfg['config']).model
        else:
            model_cfg = copy.deepcopy(cfg['model'])
        teacher = MODELS.build(model_cfg)
        _load_teacher_weights(teacher, osp.expanduser(cfg['checkpoint']))
        teacher.requires_grad_(False)
        return teacher.eval()

    def set_teacher(self, teacher: torch.nn.Module) -> None:
        """Use an already built teacher (frozen and put in eval mode here)."""
        teacher.requires_grad_(False)
        self._teacher.module = teacher.eval()

    @torch.no_grad()
    def teacher_logits(self, inputs: torch.Tensor, context: Callable = nullcontext
                       ) -> torch.Tensor:
        """The teacher's logits of ``inputs``, run inside ``context()`` (autocast)."""
        teacher = self.teacher
        param = next(teacher.parameters(), None)
        if param is not None and param.device != inputs.device:
            teacher.to(inputs.device)
        teacher.eval()
        with context():
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
        cls_token, dist_token = self.head.pre_logits(self.extract_feat(inputs))
        return self.head.layers.head(cls_token), self.head.layers.head_dist(dist_token)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'tensor' and self.training:
            return self.forward_distilled(inputs)
        return super().forward(inputs, data_samples, mode)

    def distillation_losses(self, output, data_samples: List, inputs: torch.Tensor,
                            teacher_context: Callable = nullcontext
                            ) -> Dict[str, torch.Tensor]:
        cls, dist = output
        base = self.head._get_loss(cls.float(), data_samples)['loss']
        teacher = None if self.distillation_loss.distillation_type == 'none' else \
            self.teacher_logits(inputs, teacher_context)
        return self.distillation_loss(base, dist, teacher)

    def loss(self, inputs: torch.Tensor, data_samples: List):
        if self.training:
            return self.distillation_losses(self.forward_distilled(inputs), data_samples,
                                            inputs)
        return super().loss(inputs, data_samples)


@MODELS.register_module()
class HATDistilledImageClassifier(HATClassifierMixin, DistilledImageClassifier):
    """:class:`DistilledImageClassifier` trained with HAT (``train_kd.py``): ``CE_k`` is the
    distillation loss on ``x + delta_k`` with the teacher fed ``x + delta_k`` (in the optim
    wrapper's autocast context, passed as ``forward_context``); ``KL_k`` on the class-token
    logits."""

    def teacher_logits(self, inputs: torch.Tensor, context: Callable = nullcontext
                       ) -> torch.Tensor:
        """The teacher runs on the student's fast paths: in channels-last memory format with
        ``model.channels_last``, compiled when the student is (``model.compile``, once the
        device is known). The teacher runs K times per step, so these pay as for the student.
        """
        teacher = self.teacher
        wanted = (self.hat_channels_last, self.hat_compiled)
        if getattr(teacher, 'hat_fast_paths', (False, False)) != wanted:
            if self.hat_channels_last:
                teacher.to(memory_format=torch.channels_last)
            if self.hat_compiled:
                teacher.compile(**self.hat_compile_kwargs)
            teacher.hat_fast_paths = wanted
        return super().teacher_logits(inputs, context)

    def hat_classification_loss(self, output, data_samples, inputs, forward_context=None):
        return self.distillation_losses(output, data_samples, inputs,
                                        forward_context or nullcontext)

    def hat_kl_logits(self, output) -> torch.Tensor:
        return output[0] if isinstance(output, (tuple, list)) else output

"""VOLO (Yuan et al., *VOLO: Vision Outlooker for Visual Recognition*) in mmpretrain, trained
with token labeling and MixToken, with and without HAT.

mmpretrain has no VOLO; timm has the official architecture (``timm.models.volo``, the same
module names and parameter keys as the official ``sail-sg/volo`` code and HAT's
``models/volo.py``). The classifiers here hold that timm model, so their state dict keys
are timm's (``TimmClassifier`` removes its ``model.`` prefix): the released
``hat_volo_*.pth.tar`` weights load as they are (``tools/model_converters/
timm_volo_deit_to_mmpretrain.py`` only unwraps the timm training checkpoint).

Forward, ``mode='tensor'``:

- evaluation: timm's ``VOLO.forward``, i.e. the official prediction ``cls + 0.5 * max over
  tokens of the token logits``;
- training: the official train-mode output, a tuple ``(class-token logits [B, C], token logits
  [B, N, C], MixToken box (r1, c1, r2, c2))``: the MixToken box is applied after the patch
  embedding and reversed on the token logits, so token ``i`` of the output belongs to the
  sample whose target is ``token_label_dense[i]``.

MixToken and HAT: :class:`HATVOLOClassifier` samples ONE box per training iteration and uses
it for the clean forward and all K perturbed forwards (the official HAT script calls the
model K + 1 times and each call draws its own box; with a shared box the clean prediction
and the perturbed predictions that the KL compares see the same token mixing, and
``CE_k`` differs from ``CE_0`` only by ``delta_k``).

KL term: ``hat_kl_logits`` returns the class-token logits, the first element of the
train-mode tuple. That is what the official HAT ``train.py`` compares (``output_cle, _, _ =
model(input)`` and ``output_adv = output[0]``); the ``+ 0.5 * max(aux)`` of the evaluation
prediction is not part of it.
"""
import warnings
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.models import TimmClassifier
from mmpretrain.models.classifiers.base import BaseClassifier
from mmpretrain.registry import MODELS

from .hat_classifier import HATClassifierMixin
from .token_labeling import (sample_mix_token_box, stack_token_label_targets,
                             token_label_loss)

TOKEN_LABEL_DEFAULTS = dict(dense_weight=0.5, cls_weight=1.0, ground_truth=False,
                            mix_token=True, mix_token_beta=1.0)


@MODELS.register_module()
class VOLOClassifier(TimmClassifier):
    """A timm VOLO trained with token labeling (the plain, non-HAT step).

    Args:
        model_name (str, optional): timm VOLO name (``volo_d1_224``, ``volo_d5_512``, ...).
        arch (dict, optional): instead of ``model_name``, arguments of
            ``timm.models.volo.VOLO`` (``layers``, ``embed_dims``, ``num_heads``, ...), e.g. for
            small test models.
        pretrained (bool): timm pretrained weights (downloads; default False).
        token_label (dict): ``dense_weight`` (0.5, VOLO), ``cls_weight`` (1.0),
            ``ground_truth`` (False; True = ``TokenLabelGTCrossEntropy``, VOLO's fine-tuning),
            ``mix_token`` (True), ``mix_token_beta`` (1.0).
        loss (dict): loss of the evaluation-mode ``loss()`` (validation loss only).
        data_preprocessor (dict): default ``TokenLabelDataPreprocessor``.
        **kwargs: passed to timm (``num_classes``, ``drop_path_rate``, ``img_size``, ...).
    """

    def __init__(self,
                 model_name: Optional[str] = None,
                 arch: Optional[dict] = None,
                 pretrained: bool = False,
                 token_label: Optional[dict] = None,
                 loss: dict = dict(type='CrossEntropyLoss', loss_weight=1.0),
                 train_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        if (model_name is None) == (arch is None):
            raise ValueError('VOLOClassifier needs exactly one of model_name (a timm VOLO '
                             'name such as volo_d1_224) and arch (timm VOLO arguments).')
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'mmpretrain.TokenLabelDataPreprocessor')
        if str(data_preprocessor['type']).endswith('TokenLabelDataPreprocessor'):
            data_preprocessor.setdefault('num_classes', kwargs.get('num_classes', 1000))
        if train_cfg is not None and train_cfg.get('augments'):
            raise ValueError('VOLOClassifier mixes batches in TokenLabelDataPreprocessor '
                             '(mixup_alpha / cutmix_alpha); remove model.train_cfg.augments.')
        # TimmClassifier.__init__ would call timm.create_model(model_name); build here instead
        BaseClassifier.__init__(self, init_cfg=init_cfg, data_preprocessor=data_preprocessor)
        from timm.models import create_model
        from timm.models.volo import VOLO
        if arch is not None:
            self.model = VOLO(**dict(arch), **kwargs)
        else:
            self.model = create_model(model_name, pretrained=pretrained, **kwargs)
        if not isinstance(self.model, VOLO):
            raise TypeError(f'{model_name} is not a timm VOLO model')
        m = self.model
        if m.aux_head is None or m.post_network is None or m.global_pool != 'token':
            raise ValueError('token labeling needs the class token (post_layers), the token '
                             "head (use_aux_head=True, num_classes > 0) and global_pool='token'")
        self.loss_module = loss if isinstance(loss, torch.nn.Module) else MODELS.build(loss)
        self.with_cp = with_cp
        if with_cp:
            m.set_grad_checkpointing()
        self._register_state_dict_hook(self._remove_state_dict_prefix)
        self._register_load_state_dict_pre_hook(self._add_state_dict_prefix)
        self._register_load_state_dict_pre_hook(self._resize_pos_embed)  # after the prefix

        cfg = dict(TOKEN_LABEL_DEFAULTS)
        unknown = sorted(set(token_label or {}) - set(cfg))
        if unknown:
            raise ValueError(f'unknown token_label fields {unknown}; valid: {sorted(cfg)}')
        cfg.update(token_label or {})
        self.token_label = cfg
        self._mix_token_step = None  # dict while a (HAT) iteration shares one box
        self.last_mix_token_box = None

    def _resize_pos_embed(self, state_dict, prefix, *args):
        """Fine-tuning at another resolution (VOLO's 224 -> 384/448/512): a ``pos_embed`` of
        another grid is resized bicubically, as VOLO's ``load_pretrained_weights`` does.
        (``hat_mm.utils.load_weights_strict``, used by tools/test.py, still refuses it.)"""
        key = prefix + 'model.pos_embed'
        old = state_dict.get(key)
        new_shape = self.model.pos_embed.shape
        if old is None or old.dim() != 4 or tuple(old.shape) == tuple(new_shape) \
                or old.shape[-1] != new_shape[-1]:
            return
        warnings.warn(f'resizing pos_embed {tuple(old.shape)} -> {tuple(new_shape)} (bicubic)')
        grid = F.interpolate(old.permute(0, 3, 1, 2).float(), size=tuple(new_shape[1:3]),
                             mode='bicubic', align_corners=False)
        state_dict[key] = grid.permute(0, 2, 3, 1).to(old.dtype)

    # -- forward ------------------------------------------------------------------------
    def forward(self, inputs, data_samples=None, mode='tensor'):
        if mode == 'tensor':
            return self.forward_train(inputs) if self.training else self.model(inputs)
        return super().forward(inputs, data_samples, mode)

    def _mix_token_box(self, grid_h: int, grid_w: int) -> Tuple[int, int, int, int]:
        if not (self.training and self.token_label['mix_token']):
            return (0, 0, 0, 0)
        step = self._mix_token_step
        if step is not None and 'box' in step:
            if step['grid'] != (grid_h, grid_w):
                raise RuntimeError('input size changed within one iteration')
            return step['box']
        box = sample_mix_token_box(grid_h, grid_w, self.token_label['mix_token_beta'])
        if step is not None:
            step.update(box=box, grid=(grid_h, grid_w))
        self.last_mix_token_box = box
        return box

    def forward_train(self, inputs: torch.Tensor, box: Optional[Tuple[int, ...]] = None):
        """The official train-mode forward: ``(cls logits, token logits, MixToken box)``."""
        m = self.model
        s = m.pooling_scale
        x = m.patch_embed(inputs).permute(0, 2, 3, 1)  # B, H, W, C
        grid_h, grid_w = x.shape[1] // s, x.shape[2] // s
        if box is None:
            box = self._mix_token_box(grid_h, grid_w)
        r1, c1, r2, c2 = box
        mixed = (r2 - r1) * (c2 - c1) > 0
        if mixed:
            x = x.clone()
            x[:, s * r1:s * r2, s * c1:s * c2] = x.flip(0)[:, s * r1:s * r2, s * c1:s * c2]
        x = m.forward_tokens(x)
        x = m.forward_cls(x)
        x = m.norm(x)
        cls = m.head(x[:, 0])
        aux = m.aux_head(x[:, 1:])
        if mixed:  # reverse MixToken on the token outputs
            aux = aux.reshape(aux.shape[0], grid_h, grid_w, aux.shape[-1])
            aux = aux.clone()
            aux[:, r1:r2, c1:c2] = aux.flip(0)[:, r1:r2, c1:c2]
            aux = aux.reshape(aux.shape[0], grid_h * grid_w, aux.shape[-1])
        return cls, aux, tuple(int(v) for v in box)

    @torch.no_grad()
    def dense_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Token-head logits ``[B, C, h, w]`` (evaluation mode): the score map of this model
        as a token-labeling teacher."""
        x = self.model.forward_features(inputs)
        aux = self.model.aux_head(x[:, 1:])
        B, N, C = aux.shape
        H, W = inputs.shape[-2:]
        h = int(round((N * H / W) ** 0.5))
        return aux.reshape(B, h, N // h, C).permute(0, 3, 1, 2)

    # -- losses -------------------------------------------------------------------------
    def token_label_losses(self, output, data_samples: List) -> Dict[str, torch.Tensor]:
        cls, aux, box = output
        gt, cls_t, dense_t = stack_token_label_targets(data_samples)
        tl = self.token_label
        loss, loss_cls, loss_aux = token_label_loss(
            cls.float(), aux.float(), box, cls_t.float(),
            None if dense_t is None else dense_t.float(), gt.float(),
            dense_weight=tl['dense_weight'], cls_weight=tl['cls_weight'],
            ground_truth=tl['ground_truth'])
        return dict(loss=loss, loss_tl_cls=loss_cls.detach(), loss_tl_aux=loss_aux.detach())

    def loss(self, inputs: torch.Tensor, data_samples: List, **kwargs):
        if self.training:
            return self.token_label_losses(self.forward_train(inputs), data_samples)
        return super().loss(inputs, data_samples, **kwargs)


@MODELS.register_module()
class HATVOLOClassifier(HATClassifierMixin, VOLOClassifier):
    """:class:`VOLOClassifier` trained with HAT: ``CE_k`` is the token-labeling loss of the
    forward on ``x + delta_k``; one MixToken box per iteration (see the module docstring);
    ``KL_k`` on the class-token logits.
    """

    def hat_compile_modules(self):
        m = self.model  # forward_train calls these, not the VOLO module itself
        return [m.patch_embed, *m.network, *(m.post_network or []), m.norm, m.head,
                m.aux_head]

    def hat_train_step(self, data, optim_wrapper, runner_model):
        self._mix_token_step = {}
        try:
            return super().hat_train_step(data, optim_wrapper, runner_model)
        finally:
            self._mix_token_step = None

    def hat_classification_loss(self, output, data_samples, inputs):
        return self.token_label_losses(output, data_samples)

    def hat_kl_logits(self, output) -> torch.Tensor:
        return output[0] if isinstance(output, (tuple, list)) else output

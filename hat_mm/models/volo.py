"""VOLO (Yuan et al., *VOLO: Vision Outlooker for Visual Recognition*) in mmpretrain, trained
with token labeling and MixToken, with and without HAT.

mmpretrain has no VOLO; timm has the official architecture (``timm.models.volo``, the same
module names and parameter keys as the official ``sail-sg/volo`` code and HAT's
``models/volo.py``). The classifiers here are mmpretrain ``TimmClassifier`` s holding that
model, so their state dict keys are timm's: the released ``hat_volo_*.pth.tar`` weights load
as they are (``tools/model_converters/timm_volo_deit_to_mmpretrain.py`` only unwraps the
timm training checkpoint).

Forward, ``mode='tensor'``:

- evaluation: timm's ``VOLO.forward``, the official prediction ``cls + 0.5 * max over
  tokens of the token logits``;
- training: the official train-mode output ``(class-token logits [B, C], token logits
  [B, N, C], MixToken box (r1, c1, r2, c2))``: the tokens in the box are swapped with those
  of the flipped batch after the patch embedding and swapped back on the token logits, so
  token ``i`` of the output belongs to the sample whose target is ``token_label_dense[i]``.
  Each call draws its own box (``mix_token_box`` fixes it instead, for tests and analysis).

MixToken and HAT: as in the official HAT ``train.py``, which calls the model K + 1 times in
train mode, every forward of a HAT step draws its own box: the clean forward (whose
class-token logits give ``p_c``) and each of the K perturbed forwards, whose token-labeling
loss uses the box of that forward. The KL term compares the class-token logits, the first
element of the train-mode tuple, as that ``train.py`` does.
"""
import inspect
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.models import TimmClassifier
from mmpretrain.registry import MODELS
from timm.models import create_model, register_model
from timm.models.volo import VOLO

from .hat_classifier import HATClassifierMixin
from .token_label_targets import rand_box, stack_token_label_targets

__all__ = ['VOLOClassifier', 'HATVOLOClassifier', 'sample_mix_token_box']


class VOLOTokenLogits(torch.nn.Module):
    """The part of the train-mode forward between MixToken and its reversal: VOLO's stages,
    class-attention blocks, norm and both heads, ``x [B, H, W, C] -> (cls [B, K], token
    logits [B, N, K])``.

    It is one module so that ``model.compile`` traces it as one graph: compiled one by one,
    VOLO's stages (``nn.Sequential`` s) are traced block by block, and as every block has its
    own drop-path rate dynamo recompiles the same ``forward`` for each, until its recompile
    limit sends the rest back to eager. Held outside the module tree (no state-dict keys).
    """

    def __init__(self, volo: VOLO):
        super().__init__()
        self.volo = volo

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        m = self.volo
        x = m.norm(m.forward_cls(m.forward_tokens(x)))
        return m.head(x[:, 0]), m.aux_head(x[:, 1:])


@register_model
def volo_custom(pretrained: bool = False, **kwargs) -> VOLO:
    """timm entry point of a VOLO of any size, from ``timm.models.volo.VOLO``'s own arguments
    (``VOLOClassifier(arch=...)``, e.g. small test models)."""
    if pretrained:
        raise ValueError('volo_custom has no pretrained weights')
    plumbing = inspect.signature(create_model).parameters  # what timm forwards to entries
    return VOLO(**{k: v for k, v in kwargs.items() if k not in plumbing})


def sample_mix_token_box(grid_h: int, grid_w: int, beta: float = 1.0
                         ) -> Tuple[int, int, int, int]:
    """The MixToken box of the official VOLO code: ``lam ~ Beta(beta, beta)``, a box of
    about ``1 - lam`` of the token grid; ``(r1, c1, r2, c2)`` = rows ``r1:r2``, columns
    ``c1:c2``."""
    top, bottom, left, right = rand_box(grid_h, grid_w, np.random.beta(beta, beta))
    return top, left, bottom, right


@MODELS.register_module()
class VOLOClassifier(TimmClassifier):
    """A timm VOLO trained with token labeling (the plain, non-HAT step).

    Args:
        model_name (str, optional): timm VOLO name (``volo_d1_224``, ``volo_d5_512``, ...).
        arch (dict, optional): instead of ``model_name``, arguments of
            ``timm.models.volo.VOLO`` (``layers``, ``embed_dims``, ``num_heads``, ...).
        token_label_loss (dict): the training loss, default
            ``dict(type='TokenLabelLoss')`` (VOLO: dense weight 0.5, class weight 1.0).
        mix_token (bool): MixToken on (True, VOLO's default); ``mix_token_beta`` (1.0).
        loss (dict): loss of the evaluation-mode ``loss()`` (validation loss only).
        data_preprocessor (dict): default ``TokenLabelDataPreprocessor``.
        **kwargs: ``TimmClassifier`` / timm arguments (``pretrained``, ``num_classes``,
            ``drop_path_rate``, ``img_size``, ``with_cp``, ...).
    """

    def __init__(self, model_name: Optional[str] = None, arch: Optional[dict] = None,
                 token_label_loss: dict = dict(type='TokenLabelLoss'),
                 mix_token: bool = True, mix_token_beta: float = 1.0,
                 data_preprocessor: Optional[dict] = None, train_cfg: Optional[dict] = None,
                 **kwargs):
        if (model_name is None) == (arch is None):
            raise ValueError('VOLOClassifier needs exactly one of model_name (a timm VOLO '
                             'name such as volo_d1_224) and arch (timm VOLO arguments).')
        if train_cfg is not None and train_cfg.get('augments'):
            raise ValueError('VOLOClassifier mixes batches in TokenLabelDataPreprocessor '
                             '(mixup_alpha / cutmix_alpha); remove model.train_cfg.augments.')
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'mmpretrain.TokenLabelDataPreprocessor')
        if str(data_preprocessor['type']).endswith('TokenLabelDataPreprocessor'):
            data_preprocessor.setdefault('num_classes', kwargs.get('num_classes', 1000))
        if arch is not None:
            model_name = 'volo_custom'
            kwargs.update(arch)
        super().__init__(model_name, data_preprocessor=data_preprocessor, **kwargs)
        m = self.model
        if not isinstance(m, VOLO):
            raise TypeError(f'{model_name} is not a timm VOLO model')
        if m.aux_head is None or m.post_network is None or m.global_pool != 'token':
            raise ValueError('token labeling needs the class token (post_layers), the token '
                             "head (use_aux_head=True, num_classes > 0) and global_pool='token'")
        self.token_label_loss = token_label_loss if isinstance(
            token_label_loss, torch.nn.Module) else MODELS.build(token_label_loss)
        self.mix_token, self.mix_token_beta = bool(mix_token), float(mix_token_beta)
        self.__dict__['token_logits'] = VOLOTokenLogits(m)  # not a child: no new keys
        self._register_load_state_dict_pre_hook(self._resize_pos_embed)  # after the prefix

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
    def forward(self, inputs, data_samples=None, mode='tensor',
                mix_token_box: Optional[Sequence[int]] = None):
        if mode == 'tensor':
            return self.forward_train(inputs, mix_token_box) if self.training \
                else self.model(inputs)
        return super().forward(inputs, data_samples, mode)

    def token_grid(self, height: int, width: int) -> Tuple[int, int]:
        """The MixToken grid of an input size: the patch embedding's output, pooled."""
        for conv in self.model.patch_embed.modules():
            if isinstance(conv, torch.nn.Conv2d):
                (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
                (ph, pw), (dh, dw) = conv.padding, conv.dilation
                height = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
                width = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        s = self.model.pooling_scale
        return height // s, width // s

    def draw_mix_token_box(self, inputs: torch.Tensor) -> Tuple[int, int, int, int]:
        """A MixToken box for ``inputs`` (``(0, 0, 0, 0)``: none)."""
        if not (self.training and self.mix_token):
            return (0, 0, 0, 0)
        return sample_mix_token_box(*self.token_grid(*inputs.shape[-2:]), self.mix_token_beta)

    def forward_train(self, inputs: torch.Tensor, box: Optional[Sequence[int]] = None):
        """The official train-mode forward: ``(cls logits, token logits, MixToken box)``."""
        m = self.model
        s = m.pooling_scale
        if box is None:
            box = self.draw_mix_token_box(inputs)
        x = m.patch_embed(inputs).permute(0, 2, 3, 1)  # B, H, W, C
        grid_h, grid_w = x.shape[1] // s, x.shape[2] // s
        r1, c1, r2, c2 = (int(v) for v in box)
        if not (0 <= r1 <= r2 <= grid_h and 0 <= c1 <= c2 <= grid_w):
            raise ValueError(f'MixToken box {tuple(box)} outside the {grid_h}x{grid_w} grid')
        mixed = (r2 - r1) * (c2 - c1) > 0
        if mixed:
            x = x.clone()
            x[:, s * r1:s * r2, s * c1:s * c2] = x.flip(0)[:, s * r1:s * r2, s * c1:s * c2]
        cls, aux = self.token_logits(x)
        if mixed:  # reverse MixToken on the token outputs
            aux = aux.reshape(aux.shape[0], grid_h, grid_w, aux.shape[-1]).clone()
            aux[:, r1:r2, c1:c2] = aux.flip(0)[:, r1:r2, c1:c2]
            aux = aux.reshape(aux.shape[0], grid_h * grid_w, aux.shape[-1])
        return cls, aux, (r1, c1, r2, c2)

    # -- losses -------------------------------------------------------------------------
    def token_label_losses(self, output, data_samples: List) -> Dict[str, torch.Tensor]:
        cls, aux, box = output
        gt, cls_t, dense_t = stack_token_label_targets(data_samples)
        return self.token_label_loss(cls.float(), aux.float(), cls_t.float(),
                                     None if dense_t is None else dense_t.float(),
                                     gt.float(), mix_token_box=box)

    def loss(self, inputs: torch.Tensor, data_samples: List, **kwargs):
        if self.training:
            return self.token_label_losses(self.forward_train(inputs), data_samples)
        return super().loss(inputs, data_samples, **kwargs)


@MODELS.register_module()
class HATVOLOClassifier(HATClassifierMixin, VOLOClassifier):
    """:class:`VOLOClassifier` trained with HAT: ``CE_k`` is the token-labeling loss of the
    forward on ``x + delta_k`` (with the MixToken box that forward drew, see the module
    docstring); ``KL_k`` on the class-token logits.
    """

    def hat_compile_modules(self):
        # forward_train calls these, not the VOLO module itself
        return [self.model.patch_embed, self.token_logits]

    def hat_classification_loss(self, output, data_samples, inputs, forward_context=None):
        return self.token_label_losses(output, data_samples)

    def hat_kl_logits(self, output) -> torch.Tensor:
        return output[0] if isinstance(output, (tuple, list)) else output

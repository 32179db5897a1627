"""ViT / DeiT backbones initialised as the official HAT code's timm 0.4 ``VisionTransformer``.

The official ``train.py`` / ``train_kd.py`` build timm's ``VisionTransformer`` (timm 0.4.x,
``weight_init=''``), whose ``init_weights`` draws ``pos_embed``, ``cls_token`` and
``dist_token`` from N(0, 0.02) truncated to [-2, 2], and then ``self.apply(_init_vit_weights)``:
every ``nn.Linear`` (attention, MLP and the heads: ``apply`` passes no module name, so the
head branch of that function is never taken) N(0, 0.02) truncated to [-2, 2] with a zero
bias, every LayerNorm weight 1 and bias 0; the patch-embedding ``Conv2d`` keeps PyTorch's
default initialisation.

mmpretrain's ``VisionTransformer`` differs after ``init_weights()``: the MLP (FFN) linear
layers are Xavier-uniform with biases from N(0, 1e-6) (``TransformerEncoderLayer``), and the
class token stays zero. The subclasses here re-apply timm's rule to the backbone after
mmpretrain's own initialisation (not when ``init_cfg`` loads a ``Pretrained`` checkpoint).
Their parameters and state-dict keys are mmpretrain's, so checkpoints and the converters in
``tools/model_converters`` are unchanged. The heads (``VisionTransformerClsHead``,
``DeiTClsHead``) get timm's rule from the paper configs' ``head.init_cfg``.
"""
from mmpretrain.models.backbones import DistilledVisionTransformer, VisionTransformer
from mmpretrain.registry import MODELS
from torch import nn


def _loads_pretrained(init_cfg) -> bool:
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    return any(isinstance(c, dict) and c.get('type') == 'Pretrained' for c in cfgs)


def init_like_timm_vit(backbone: nn.Module) -> None:
    """timm 0.4's ``VisionTransformer.init_weights('')`` on an mmpretrain ViT backbone."""
    for name in ('pos_embed', 'cls_token', 'dist_token'):
        token = getattr(backbone, name, None)
        if isinstance(token, nn.Parameter):
            nn.init.trunc_normal_(token, std=0.02, a=-2.0, b=2.0)
    for module in backbone.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class _TimmInitMixin:

    def init_weights(self):
        super().init_weights()
        if not _loads_pretrained(self.init_cfg):
            init_like_timm_vit(self)


@MODELS.register_module()
class TimmInitVisionTransformer(_TimmInitMixin, VisionTransformer):
    """mmpretrain's ``VisionTransformer``, initialised as timm 0.4's (module docstring)."""


@MODELS.register_module()
class TimmInitDistilledVisionTransformer(_TimmInitMixin, DistilledVisionTransformer):
    """mmpretrain's ``DistilledVisionTransformer``, initialised as timm 0.4's DeiT."""

"""The ViT / DeiT paper configs start from the weights timm 0.4's ``VisionTransformer``
(``weight_init=''``) draws in the official HAT code, checked parameter by parameter against a
plain-PyTorch statement of that rule."""
import math
import os.path as osp

import pytest
import torch
from torch import nn

from .helpers import paper_config
from .runner_utils import ROOT

STD = 0.02  # timm 0.4: trunc_normal_(std=.02), truncated at [-2, 2] (100 std: no effect)


def ks_distance(values: torch.Tensor, std: float) -> float:
    """Kolmogorov-Smirnov distance of ``values`` from N(0, std)."""
    x = values.detach().double().flatten().sort().values
    n = x.numel()
    cdf = 0.5 * (1 + torch.special.erf(x / (std * math.sqrt(2))))
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n
    return max((upper - cdf).abs().max().item(), (upper - 1 / n - cdf).abs().max().item())


def assert_normal_002(name: str, values: torch.Tensor) -> None:
    n = values.numel()
    assert values.abs().max() <= 2.0, name
    tolerance = (0.2 if n < 1000 else 0.03) * STD
    assert abs(values.std().item() - STD) < tolerance, (name, values.std().item())
    # 1% level of the KS test (1.63 / sqrt(n)); Xavier-uniform and zeros are far off
    assert ks_distance(values, STD) < 1.63 / math.sqrt(n) + 0.005, name


def check_timm_vit_rule(model: nn.Module) -> set:
    """Assert timm 0.4's ViT initialisation on every parameter; return the names checked."""
    checked = set()
    for mname, module in model.named_modules():
        params = dict(module.named_parameters(recurse=False))
        full = {f'{mname}.{k}' if mname else k: v for k, v in params.items()}
        if isinstance(module, nn.Linear):  # attention, MLP, head(s)
            assert_normal_002(f'{mname}.weight', module.weight)
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), mname
        elif isinstance(module, nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), mname
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), mname
        elif isinstance(module, nn.Conv2d):  # patch embedding: PyTorch's default
            bound = 1 / math.sqrt(module.weight[0].numel())
            for name, p in params.items():
                assert p.abs().max() <= bound, (mname, name)
                assert abs(p.std().item() - bound / math.sqrt(3)) < 0.15 * bound, (mname, name)
        else:  # tokens and position embedding
            for name, p in params.items():
                assert name in ('cls_token', 'dist_token', 'pos_embed'), f'{mname}.{name}'
                assert_normal_002(f'{mname}.{name}', p)
        checked |= set(full)
    return checked


@pytest.mark.parametrize('config,model_type', [
    ('hat_vit_t.py', 'HATImageClassifier'),
    ('hat_deit_b_distilled.py', 'HATDistilledImageClassifier'),
])
def test_paper_vit_and_deit_initialise_as_timm_0_4(config, model_type):
    from mmpretrain.registry import MODELS
    cfg = paper_config(osp.join(ROOT, 'configs', config), model_type)
    if 'deit' in config:  # the same types and init_cfgs at the smallest size
        cfg.model.backbone.arch = 'deit-tiny'
        cfg.model.head.in_channels = 192
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    checked = check_timm_vit_rule(model)
    assert checked == {n for n, _ in model.named_parameters()}
    assert model.backbone.cls_token.abs().max() > 0  # mmpretrain leaves it at zero
    if 'deit' in config:
        assert {'backbone.dist_token', 'head.layers.head_dist.weight'} <= checked


@pytest.mark.parametrize('kind', ['VisionTransformer', 'DistilledVisionTransformer'])
def test_same_keys_as_mmpretrain_and_pretrained_weights_kept(kind, tmp_path):
    """The state-dict keys are mmpretrain's (checkpoints, converters); a ``Pretrained``
    init_cfg loads its checkpoint and nothing is drawn over it."""
    from mmpretrain.registry import MODELS
    base = dict(arch='deit-tiny', img_size=32, patch_size=16)
    plain = MODELS.build(dict(type=kind, **base))
    ours = MODELS.build(dict(type='TimmInit' + kind, **base))
    assert list(ours.state_dict()) == list(plain.state_dict())
    for p in plain.parameters():
        nn.init.uniform_(p, 3.0, 4.0)  # far from any initialisation rule
    ckpt = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': plain.state_dict()}, ckpt)
    loaded = MODELS.build(dict(type='TimmInit' + kind, **base,
                               init_cfg=dict(type='Pretrained', checkpoint=ckpt)))
    loaded.init_weights()
    for (name, a), b in zip(loaded.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name

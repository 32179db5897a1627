"""The six pretraining configs: inheritance, HAT settings, the paper's architectures."""
import os.path as osp

import pytest
from mmengine.config import Config

import hat_mm  # noqa: F401
from hat_mm.engine import apply_hat

from .runner_utils import ROOT

# SPEC section 2: params (M), per-GPU batch, drop-path, clip-grad, warm-up epochs
PAPER = {
    'hat_vit_t': (5.7, 128, 0.1, None, 5),
    'hat_vit_s': (22.1, 128, 0.1, None, 5),
    'hat_vit_b': (86.6, 128, 0.1, None, 5),
    'hat_swin_t': (28.3, 256, 0.2, 1.0, 20),
    'hat_swin_s': (49.6, 128, 0.3, 5.0, 20),
    'hat_swin_b': (87.8, 128, 0.5, 5.0, 20),
}


@pytest.mark.parametrize('name', sorted(PAPER))
def test_pretraining_config(name):
    params_m, batch, drop_path, clip, warmup = PAPER[name]
    raw = Config.fromfile(osp.join(ROOT, 'configs', f'{name}.py'))
    assert raw.runner_type == 'HATRunner'
    cfg = apply_hat(raw)
    assert cfg.model.type == 'HATImageClassifier'
    hat = cfg.model.hat
    assert (hat.adv_iters, hat.adv_epochs, hat.adv_kl_weight, hat.adv_ce_weight) == \
        (3, 200, 0.01, 3.0)
    assert abs(hat.adv_eps - 0.00784314) < 1e-9
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert (cfg.optim_wrapper.get('clip_grad') or {}).get('max_norm') == clip
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    # lr is given for a total batch of 1024 and scaled linearly (timm convention)
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=1024)
    assert cfg.train_cfg.max_epochs == 310
    assert cfg.param_scheduler[0].end == warmup
    assert cfg.param_scheduler[1].eta_min == 1e-5 and cfg.param_scheduler[1].end == 300
    # the recipe's data pipeline and batch augments are inherited
    assert [a['type'] for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert cfg.model.head.loss.label_smooth_val == 0.1
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandAugment' in types and 'RandomErasing' in types
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'HATPhaseHook' in hooks
    if name == 'hat_vit_b':
        assert 'EMAHook' in hooks  # the recipe's own hooks are kept

    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - params_m) <= 0.1, f'{name}: {n:.2f}M parameters, paper {params_m}M'


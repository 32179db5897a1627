"""One optimizer group per setting (MergedGroupsOptimWrapperConstructor): each parameter
keeps its settings, the HAT steps move the weights exactly as with one group per parameter,
and a state saved with one group per parameter resumes."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

import hat_mm  # noqa: F401
from hat_mm.engine import merge_param_groups
from hat_mm.engine.resume import check_optimizer_groups
from hat_mm.utils.checkpoint import CheckpointError

from .helpers import random_batch
from .test_fast_paths import _tiny_swin, _tiny_vit

SWIN = 'configs/hat_swin_t.py'


def _wrapper(model, config, merged):
    cfg = copy.deepcopy(Config.fromfile(config).optim_wrapper)
    if not merged:
        cfg.constructor = 'DefaultOptimWrapperConstructor'
    return build_optim_wrapper(model, cfg)


def _settings(wrapper):
    """parameter -> the settings of its group (lr, weight decay, betas, ...)."""
    return {id(p): {k: v for k, v in group.items() if k != 'params'}
            for group in wrapper.optimizer.param_groups for p in group['params']}


def _hat_steps(model, wrapper, seeds):
    model.train()
    model.set_hat_phase(True)
    for i in seeds:
        torch.manual_seed(100 + i)
        model.train_step(random_batch(seed=i), wrapper)
    return copy.deepcopy(model.state_dict())


@pytest.mark.parametrize('config', [SWIN, 'configs/hat_vit_b.py', 'configs/hat_vit_t.py',
                                    'configs/hat_deit_b_distilled.py',
                                    'configs/hat_volo_d1_224.py'])
def test_paper_configs_use_one_group_per_setting(config):
    assert Config.fromfile(config).optim_wrapper.constructor == \
        'MergedGroupsOptimWrapperConstructor'


@pytest.mark.parametrize('config, model', [(SWIN, lambda: _tiny_swin(False)),
                                           ('configs/hat_vit_b.py', _tiny_vit)])
def test_every_parameter_keeps_its_settings_in_a_few_groups(config, model):
    model = model()
    per_param, merged = (_wrapper(model, config, m) for m in (False, True))
    n = len(list(model.parameters()))
    assert len(per_param.optimizer.param_groups) == n  # mmengine's: one group each
    assert _settings(merged) == _settings(per_param)  # every parameter once, same settings
    distinct = {repr(sorted(s.items())) for s in _settings(per_param).values()}
    assert len(merged.optimizer.param_groups) == len(distinct) <= 4
    assert {g['weight_decay'] for g in merged.optimizer.param_groups} == {0.0, 0.05}
    order = [id(p) for p in model.parameters()]  # parameters keep their order in a group
    for group in merged.optimizer.param_groups:
        ids = [id(p) for p in group['params']]
        assert ids == sorted(ids, key=order.index)


def test_merged_groups_give_the_same_steps_and_resume_a_per_parameter_state():
    models = [_tiny_swin(False), _tiny_swin(False)]
    per_param = _wrapper(models[0], SWIN, merged=False)
    merged = _wrapper(models[1], SWIN, merged=True)
    start = copy.deepcopy(models[0].state_dict())
    want = _hat_steps(models[0], per_param, seeds=[0, 1])
    got = _hat_steps(models[1], merged, seeds=[0, 1])
    assert max((want[k] - start[k]).abs().max() for k in start) > 1e-4  # they trained
    for k in want:  # the same fused AdamW arithmetic per element: bit for bit
        assert torch.equal(got[k], want[k]), k

    # a checkpoint of the per-parameter groups (hat-mm before the merge) resumes into them
    resumed = copy.deepcopy(models[0])
    resumed_wrapper = _wrapper(resumed, SWIN, merged=True)
    resumed_wrapper.load_state_dict(copy.deepcopy(per_param.state_dict()))
    assert len(resumed_wrapper.optimizer.param_groups) == len(merged.optimizer.param_groups)
    want = _hat_steps(models[0], per_param, seeds=[2])
    got = _hat_steps(resumed, resumed_wrapper, seeds=[2])
    for k in want:  # Adam's moments and step counts came along: the same third step
        assert torch.equal(got[k], want[k]), k


def test_another_models_optimizer_state_is_still_refused():
    swin_wrapper = _wrapper(_tiny_swin(False), SWIN, merged=True)
    vit = _tiny_vit()
    vit_wrapper = _wrapper(vit, 'configs/hat_vit_b.py', merged=False)
    _hat_steps(vit, vit_wrapper, seeds=[0])
    with pytest.raises(ValueError, match='parameter group'):
        swin_wrapper.load_state_dict(vit_wrapper.state_dict())


def test_merge_keeps_first_appearance_order_and_parameter_order():
    groups = [dict(params=[0], weight_decay=0.05), dict(params=[1], weight_decay=0.0),
              dict(params=[2], weight_decay=0.05), dict(params=[3], weight_decay=0.0, lr=2.0),
              dict(params=[4], weight_decay=0.0)]
    assert merge_param_groups(groups) == [dict(params=[0, 2], weight_decay=0.05),
                                          dict(params=[1, 4], weight_decay=0.0),
                                          dict(params=[3], weight_decay=0.0, lr=2.0)]


def test_resume_refuses_an_optimizer_state_of_other_groups_before_loading():
    """A merged-groups state resumed into mmengine's per-parameter groups (a config without
    the constructor) is refused by name, with the fix; the states that fit pass."""
    model = _tiny_swin(False)
    per_param = _wrapper(model, SWIN, merged=False)
    merged = _wrapper(model, SWIN, merged=True)
    check_optimizer_groups(merged.optimizer, per_param.state_dict(), 'old.pth')  # merged on load
    check_optimizer_groups(merged.optimizer, merged.state_dict(), 'new.pth')
    with pytest.raises(CheckpointError, match=r"resume checkpoint new\.pth: its optimizer "
                       r"state has 3 parameter group\(s\) and this config's optimizer \d+.*"
                       r"MergedGroupsOptimWrapperConstructor.*load_from=new\.pth"):
        check_optimizer_groups(per_param.optimizer, merged.state_dict(), 'new.pth')

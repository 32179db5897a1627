"""TimmCosineLR: the official scripts' LR schedule (timm's CosineLRScheduler, one LR per
epoch), against timm's own scheduler, and as mmengine's runner steps it."""
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, PARAM_SCHEDULERS

from hat_mm.engine import HATRunner, TimmCosineLR

from .runner_utils import demo_train_cfg


def _timm_lrs(lr, epochs, **kwargs):
    """What timm's CosineLRScheduler sets for each epoch, stepped as the official train.py
    steps it (``lr_scheduler.step(epoch)``)."""
    from timm.scheduler import CosineLRScheduler
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = CosineLRScheduler(opt, cycle_limit=1, t_in_epochs=True, **kwargs)
    lrs = []
    for epoch in range(epochs):
        sched.step(epoch)
        lrs.append(opt.param_groups[0]['lr'])
    return lrs


@pytest.mark.parametrize('lr, cosine, warmup, warmup_lr, min_lr, cooldown', [
    (2e-3, 300, 20, 1e-6, 1e-5, 10),  # Swin-T, 8 x 256 images (the scaled lr)
    (1e-3, 300, 5, 1e-6, 1e-5, 10),  # ViT / DeiT
    (8e-6, 30, 5, 1e-6, 4e-6, 10),  # VOLO high-resolution fine-tuning
])
def test_equals_timms_cosine_scheduler_per_epoch(lr, cosine, warmup, warmup_lr, min_lr,
                                                 cooldown):
    expected = _timm_lrs(lr, cosine + cooldown, t_initial=cosine, lr_min=min_lr,
                         warmup_t=warmup, warmup_lr_init=warmup_lr)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = PARAM_SCHEDULERS.build(dict(type='TimmCosineLR', cosine_epochs=cosine,
                                        warmup_epochs=warmup, warmup_lr=warmup_lr,
                                        min_lr=min_lr), default_args=dict(optimizer=opt))
    ours = []
    for _ in range(cosine + cooldown):
        ours.append(opt.param_groups[0]['lr'])
        sched.step()  # mmengine's ParamSchedulerHook: after each training epoch
    torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    assert ours[0] == warmup_lr and ours[-cooldown:] == [min_lr] * cooldown
    assert ours[warmup] < lr  # the cosine runs from epoch 0, as timm's: below lr at its start


def test_refuses_iteration_based_and_bad_epochs():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match='one LR per epoch'):
        TimmCosineLR(opt, by_epoch=False)
    with pytest.raises(ValueError, match='warmup_epochs'):
        TimmCosineLR(opt, cosine_epochs=10, warmup_epochs=20)
    with pytest.raises(ValueError, match='cosine_epochs >= 1'):
        TimmCosineLR(opt, cosine_epochs=0, warmup_epochs=0)
    with pytest.raises(ValueError, match='0 <= warmup_epochs'):
        TimmCosineLR(opt, cosine_epochs=10, warmup_epochs=-1)


def test_defaults_are_the_official_train_py_ones():
    """Official train.py: --epochs 300, --warmup-epochs 20, --warmup-lr 1e-6, --min-lr 1e-5
    (310 epochs with the 10 cool-down ones)."""
    lr = 1e-3
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = TimmCosineLR(opt)
    ours = []
    for _ in range(310):
        ours.append(opt.param_groups[0]['lr'])
        sched.step()
    expected = _timm_lrs(lr, 310, t_initial=300, lr_min=1e-5, warmup_t=20,
                         warmup_lr_init=1e-6)
    assert ours == pytest.approx(expected, rel=1e-12, abs=0)


@HOOKS.register_module(force=True)
class _RecordLR(Hook):
    priority = 'LOWEST'

    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append((runner.epoch, runner.optim_wrapper.get_lr()['lr'][0]))


def test_runner_sets_one_lr_per_epoch_from_the_scaled_lr(digits_root, tmp_path):
    """Through HATRunner: auto_scale_lr first scales the LR (16 images against a base of 32:
    x 0.5), then every iteration of epoch e trains with timm's LR of e for that scaled LR."""
    cfg = demo_train_cfg(digits_root, tmp_path, 'timm_lr', max_epochs=5, validate=False,
                         custom_hooks=[dict(type='_RecordLR')])
    cfg.param_scheduler = [dict(type='TimmCosineLR', cosine_epochs=4, warmup_epochs=2,
                                warmup_lr=1e-6, min_lr=1e-5)]
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=32)
    base = cfg.optim_wrapper.optimizer.lr
    runner = HATRunner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, _RecordLR))
    expected = _timm_lrs(base * 0.5, 5, t_initial=4, lr_min=1e-5, warmup_t=2,
                         warmup_lr_init=1e-6)
    per_epoch = {}
    for epoch, lr in hook.lrs:
        per_epoch.setdefault(epoch, []).append(lr)
    assert sorted(per_epoch) == [0, 1, 2, 3, 4]
    for epoch, lrs in per_epoch.items():
        assert len(lrs) == 3  # 48 images in batches of 16
        assert lrs == pytest.approx([expected[epoch]] * 3, rel=1e-9, abs=0)


def test_a_run_resumed_with_more_epochs_goes_on_with_the_schedule(digits_root, tmp_path):
    """The runner sets a missing ``end`` to ``train_cfg.max_epochs``. Before: a run of 2
    epochs resumed with max_epochs=5 kept end=2 from its checkpoint, and epochs 3-5 all
    trained at the LR of epoch 2."""
    lrs = {}
    for max_epochs, resume in ((2, False), (5, True)):
        cfg = demo_train_cfg(digits_root, tmp_path, f'resume_lr_{max_epochs}',
                             max_epochs=max_epochs, validate=False, resume=resume,
                             custom_hooks=[dict(type='_RecordLR')])
        cfg.param_scheduler = [dict(type='TimmCosineLR', cosine_epochs=4, warmup_epochs=1,
                                    warmup_lr=1e-6, min_lr=1e-5)]  # no end, as the configs
        runner = HATRunner.from_cfg(cfg)
        runner.train()
        hook = next(h for h in runner.hooks if isinstance(h, _RecordLR))
        for epoch, lr in hook.lrs:
            lrs.setdefault(epoch, set()).add(lr)
    expected = _timm_lrs(cfg.optim_wrapper.optimizer.lr, 5, t_initial=4, lr_min=1e-5,
                         warmup_t=1, warmup_lr_init=1e-6)
    assert sorted(lrs) == [0, 1, 2, 3, 4]  # epochs 0-1, then 2-4 after the resume
    for epoch, seen in lrs.items():
        assert sorted(seen) == pytest.approx([expected[epoch]], rel=1e-9, abs=0), epoch

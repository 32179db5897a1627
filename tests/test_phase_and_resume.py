"""The adversarial-epoch switch and resuming in the middle of training."""
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from hat_mm.engine import HATRunner, apply_hat

from .runner_utils import DEMO_CONFIG


@HOOKS.register_module(force=True)
class _RecordHATPhase(Hook):
    """Test hook: records (epoch, adversarial, logged loss terms) of each iteration, and
    optionally crashes after an epoch to simulate a killed job."""
    priority = 'LOWEST'  # after CheckpointHook, so a crash keeps that epoch's checkpoint

    def __init__(self, crash_after_epoch=None):
        self.crash_after_epoch = crash_after_epoch
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model
        self.records.append((runner.epoch, model.hat_adversarial, 'loss_kl_adv' in outputs))

    def after_train_epoch(self, runner):
        if self.crash_after_epoch is not None and runner.epoch == self.crash_after_epoch:
            raise KeyboardInterrupt('simulated crash')


def _cfg(digits_root, work_dir, name, max_epochs=4, adv_epochs=2, crash_after=None,
         resume=False):
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name
    cfg.hat.adv_epochs = adv_epochs
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.train_cfg = None  # no mixup: the runs must be reproducible
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = digits_root
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    cfg.train_dataloader.dataset.indices = 48
    cfg.train_dataloader.batch_size = 16
    cfg.train_dataloader.dataset.pipeline = cfg.test_pipeline  # deterministic
    cfg.train_dataloader.sampler.shuffle = False
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.param_scheduler[1].end = max_epochs
    cfg.custom_hooks = [dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
                        dict(type='_RecordHATPhase', crash_after_epoch=crash_after)]
    cfg.resume = resume
    return cfg


def _recorder(runner):
    return next(h for h in runner.hooks if isinstance(h, _RecordHATPhase))


def _ema_state(runner):
    hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    return {k: v.clone() for k, v in hook.ema_model.module.state_dict().items()}


def test_apply_hat_adds_hook_and_hat_model():
    cfg = apply_hat(Config.fromfile(DEMO_CONFIG))
    assert cfg.model.type == 'HATImageClassifier'
    assert cfg.model.hat.adv_epochs == 20 and cfg.model.hat.adv_iters == 3
    assert [h['type'] for h in cfg.custom_hooks].count('HATPhaseHook') == 1
    assert cfg.model_wrapper_cfg.type == 'HATDistributedDataParallel'
    again = apply_hat(cfg)  # idempotent
    assert [h['type'] for h in again.custom_hooks].count('HATPhaseHook') == 1


def test_apply_hat_refuses_a_bypassing_wrapper_and_unknown_models():
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel')
    with pytest.raises(TypeError, match='HATDistributedDataParallel'):
        apply_hat(cfg)
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.type = 'ImageToImageRetriever'
    with pytest.raises(TypeError, match='ImageToImageRetriever'):
        apply_hat(cfg)


def test_switch_at_adv_epochs_and_resume_equals_uninterrupted(digits_root, tmp_path):
    full = HATRunner.from_cfg(_cfg(digits_root, tmp_path / 'full', 'full'))
    full.train()
    rec = _recorder(full).records
    per_epoch = {e: {(a, kl) for ep, a, kl in rec if ep == e} for e in range(4)}
    assert per_epoch == {0: {(True, True)}, 1: {(True, True)},
                         2: {(False, False)}, 3: {(False, False)}}
    assert 'train/loss_kl_adv' not in full.message_hub.log_scalars  # no stale adv terms
    expected = {k: v.clone() for k, v in full.model.state_dict().items()}
    expected_ema = _ema_state(full)

    crashed = HATRunner.from_cfg(_cfg(digits_root, tmp_path / 'part', 'part', crash_after=1))
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert (tmp_path / 'part' / 'epoch_2.pth').is_file()
    assert not (tmp_path / 'part' / 'epoch_3.pth').exists()

    resumed = HATRunner.from_cfg(_cfg(digits_root, tmp_path / 'part', 'resumed',
                                      resume=True))
    resumed.train()
    rec = _recorder(resumed).records
    assert {ep for ep, _, _ in rec} == {2, 3}  # continued from the checkpoint
    assert all(a is False and kl is False for _, a, kl in rec)  # phase restored
    got = resumed.model.state_dict()
    moved = max((expected[k] - crashed.model.state_dict()[k]).abs().max() for k in expected)
    assert moved > 1e-4  # the last two epochs changed the weights
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=k)
    got_ema = _ema_state(resumed)  # EMA (and its state in the checkpoint) works with HAT
    assert any(not torch.equal(got_ema[k], got[k]) for k in got_ema)
    for k, v in expected_ema.items():
        torch.testing.assert_close(got_ema[k], v, rtol=1e-5, atol=1e-6, msg=k)


class _SneakyGetattr:
    """Pickles as getattr('', '__class__'): the first step of a sandbox escape."""

    def __reduce__(self):
        return getattr, ('', '__class__')


def test_weights_only_protection_stays_on(tmp_path):
    import pickle

    import hat_mm  # noqa: F401  installs the allow-list
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _SneakyGetattr()}, path)
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        torch.load(path)

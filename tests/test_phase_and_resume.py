"""The adversarial-epoch switch and resuming in the middle of training."""
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from hat_mm.engine import HATRunner, apply_hat

from .runner_utils import DEMO_CONFIG, demo_train_cfg


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


def _cfg(digits_root, work_dir, name, crash_after=None, resume=False, workers=0):
    return demo_train_cfg(digits_root, work_dir, name, max_epochs=3, workers=workers,
                          resume=resume,
                          custom_hooks=[dict(type='_RecordHATPhase',
                                             crash_after_epoch=crash_after)])


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


@pytest.mark.parametrize('workers', [0, 2])
def test_switch_at_adv_epochs_and_resume_equals_uninterrupted(digits_root, tmp_path, workers):
    """A run killed after epoch 2 and resumed ends bitwise equal to the uninterrupted one,
    with random crops, mixup, drop-path, shuffling and validation between epochs, in the main
    process and with (persistent) data workers."""
    full = HATRunner.from_cfg(_cfg(digits_root, tmp_path / 'full', 'full', workers=workers))
    full.train()
    rec = _recorder(full).records
    per_epoch = {e: {(a, kl) for ep, a, kl in rec if ep == e} for e in range(3)}
    assert per_epoch == {0: {(True, True)}, 1: {(True, True)}, 2: {(False, False)}}
    assert 'train/loss_kl_adv' not in full.message_hub.log_scalars  # no stale adv terms
    expected = {k: v.clone() for k, v in full.model.state_dict().items()}
    expected_ema = _ema_state(full)

    crashed = HATRunner.from_cfg(_cfg(digits_root, tmp_path / 'part', 'part', crash_after=1,
                                      workers=workers))
    with pytest.raises(KeyboardInterrupt):
        crashed.train()
    assert (tmp_path / 'part' / 'epoch_2.pth').is_file()
    assert not (tmp_path / 'part' / 'epoch_3.pth').exists()

    resumed = HATRunner.from_cfg(_cfg(digits_root, tmp_path / 'part', 'resumed',
                                      resume=True, workers=workers))
    resumed.train()
    rec = _recorder(resumed).records
    assert {ep for ep, _, _ in rec} == {2}  # continued from the checkpoint
    assert all(a is False and kl is False for _, a, kl in rec)  # phase restored
    got = resumed.model.state_dict()
    moved = max((expected[k] - crashed.model.state_dict()[k]).abs().max() for k in expected)
    assert moved > 1e-4  # the last epoch changed the weights
    for k, v in expected.items():
        assert torch.equal(got[k], v), k  # bitwise: the same random numbers were drawn
    got_ema = _ema_state(resumed)  # EMA (and its state in the checkpoint) works with HAT
    assert any(not torch.equal(got_ema[k], got[k]) for k in got_ema)
    for k, v in expected_ema.items():
        assert torch.equal(got_ema[k], v), k


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU to map the states onto')
def test_rng_states_restore_from_a_checkpoint_mapped_onto_the_gpu(tmp_path):
    """mmengine resumes with the checkpoint mapped onto the GPU; the generators take CPU byte
    tensors only (on the first GPU run every resumed pretraining stopped with 'RNG state must
    be a torch.ByteTensor')."""
    import random

    import numpy as np

    from hat_mm.engine.rng_state_hook import get_rng_state, set_rng_state

    def draw():
        return (torch.rand(4), np.random.rand(4), random.random(),
                torch.rand(4, device='cuda').cpu())

    torch.zeros(1, device='cuda')  # the CUDA generator exists, so its state is kept
    torch.save(dict(rng_state=get_rng_state()), tmp_path / 'epoch_1.pth')
    expected = draw()
    loaded = torch.load(tmp_path / 'epoch_1.pth', weights_only=True,
                        map_location=lambda storage, loc: storage.cuda())['rng_state']
    assert loaded['torch'].is_cuda and loaded['cuda'].is_cuda and loaded['numpy']['keys'].is_cuda
    set_rng_state(loaded)
    for got, want in zip(draw(), expected):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _hook_runner(model, loop='epoch', max_epochs=3, iters_per_epoch=4):
    """The parts of a runner that HATPhaseHook reads, with the message hub's last values of
    the HAT loss terms."""
    from types import SimpleNamespace

    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
    if loop == 'epoch':
        train_loop = EpochBasedTrainLoop.__new__(EpochBasedTrainLoop)
        train_loop._max_epochs = max_epochs
    else:
        train_loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
    said = []
    terms = ('loss', 'loss_ce_clean', 'loss_kl_clean', 'loss_ce_adv', 'loss_kl_adv')
    scalars = {f'train/{k}': 1.0 for k in terms}
    return SimpleNamespace(model=model, train_loop=train_loop, epoch=0, iter=0,
                           train_dataloader=[None] * iters_per_epoch,
                           logger=SimpleNamespace(info=said.append),
                           message_hub=SimpleNamespace(log_scalars=scalars), said=said)


@pytest.mark.parametrize('kl_after_adv', [True, False])
def test_phase_hook_epoch_rule_logs_and_stale_terms(kl_after_adv):
    """Adversarial while epoch < adv_epochs, recomputed before every epoch and iteration;
    the switch drops the logged terms the next phase no longer produces."""
    from hat_mm.engine import HATPhaseHook

    from .helpers import tiny_vit_classifier
    model = tiny_vit_classifier(hat=dict(adv_epochs=2, kl_after_adv=kl_after_adv))
    runner = _hook_runner(torch.nn.DataParallel(model), max_epochs=2)  # unwraps the module
    hook = HATPhaseHook()
    phases = []
    for epoch in range(3):
        runner.epoch = epoch
        (hook.before_train if epoch == 0 else hook.before_train_epoch)(runner)
        phases.append(model.hat_adversarial)
    assert phases == [True, True, False]
    assert runner.said[0] == ('HAT: adversarial phase (K=3, eps=0.00784314, step=0.00392157) '
                              'until epoch 2: every epoch of this run (train_cfg.max_epochs=2) '
                              'is adversarial')
    tail = 'clean forward + KL kept' if kl_after_adv else 'plain loss'
    assert runner.said[1:] == [
        f'HAT: adversarial phase over at epoch 2 (adv_epochs=2): K=1, {tail}']
    kept = {'train/loss', 'train/loss_ce_clean'}
    kept |= {'train/loss_kl_clean'} if kl_after_adv else set()
    assert set(runner.message_hub.log_scalars) == kept

    model.set_hat_phase(True)  # whatever set it, the next iteration follows the epoch
    hook.before_train_iter(runner, 0)
    assert model.hat_adversarial is False
    runner.train_loop._max_epochs = 3  # not the whole run: no such remark
    runner.epoch = 1
    hook.before_train_iter(runner, 0)
    assert model.hat_adversarial is True and runner.said[-1].endswith('until epoch 2')


def test_phase_hook_iteration_rule_and_checkpoint_meta():
    """Iteration-based loops: adversarial while iter < adv_epochs * len(train_dataloader).
    The phase goes into the checkpoint's meta and comes back from it."""
    from hat_mm.engine import HATPhaseHook

    from .helpers import tiny_vit_classifier
    model = tiny_vit_classifier(hat=dict(adv_epochs=2))
    runner = _hook_runner(model, loop='iter', iters_per_epoch=4)
    hook = HATPhaseHook()
    phases = []
    for it in (0, 7, 8, 9):
        runner.iter = it
        hook.before_train_iter(runner, it)
        phases.append(model.hat_adversarial)
    assert phases == [True, True, False, False]

    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['meta']['hat'] == dict(model.hat.to_dict(), adversarial=False)
    model.set_hat_phase(True)
    hook.after_load_checkpoint(runner, checkpoint)
    assert model.hat_adversarial is False
    hook.after_load_checkpoint(runner, {'meta': {}})  # a checkpoint without it: unchanged
    assert model.hat_adversarial is False


def test_phase_hook_refuses_a_model_without_hat():
    from hat_mm.engine import HATPhaseHook

    from .helpers import tiny_vit_classifier
    runner = _hook_runner(tiny_vit_classifier(hat_type='ImageClassifier'))
    with pytest.raises(TypeError, match="HATPhaseHook needs a HAT model, but model is "
                                        "ImageClassifier"):
        HATPhaseHook().before_train(runner)


def test_auto_scale_lr_scales_the_logged_base_lr_too(digits_root, tmp_path):
    """mmengine's ``scale_lr`` scales the optimizer's groups but not the optim wrapper's
    base settings, which the schedulers step and the log shows as ``base_lr``: a paper
    config on 8 x 256 images logged a ``base_lr`` half its ``lr``. Both are scaled now."""
    cfg = demo_train_cfg(digits_root, tmp_path, 'scaled', max_epochs=1, validate=False)
    cfg.custom_hooks = []
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=4)  # 16 images: the LR x 4
    runner = HATRunner.from_cfg(cfg)
    runner.train()
    wrapper = runner.optim_wrapper
    assert wrapper.base_param_settings is not None, 'the demo optimizer has several groups'
    lrs = wrapper.get_lr()
    group = next(g for g in wrapper.optimizer.param_groups if g.get('lr_mult', 1) == 1)
    assert lrs['base_lr'][0] == pytest.approx(group['lr'], rel=1e-9)
    assert wrapper.base_param_settings['initial_lr'] == pytest.approx(
        4 * cfg.optim_wrapper.optimizer.lr, rel=1e-9)


@pytest.mark.parametrize('change, message', [
    (dict(max_epochs=0), r'train_cfg.max_epochs=0: give the length of training'),
    (dict(val_interval=0), r'train_cfg.val_interval=0: validate every N epochs .* '
                           r'--no-validate'),
])
def test_loop_lengths_below_one_are_refused_before_training(digits_root, tmp_path, change,
                                                            message):
    """Before: max_epochs=0 trained nothing and exited 0; val_interval=0 failed with a
    ZeroDivisionError after the first epoch."""
    cfg = demo_train_cfg(digits_root, tmp_path, 'lengths', max_epochs=2)
    cfg.custom_hooks = []
    cfg.train_cfg.update(change)
    runner = HATRunner.from_cfg(cfg)
    with pytest.raises(ValueError, match=message):
        runner.train()
    assert not list(tmp_path.glob('epoch_*.pth'))


def test_hat_none_is_refused_not_read_as_the_defaults():
    """Before: ``--cfg-options hat=None`` (meant: no HAT) trained K = 3 for 200 epochs."""
    for where in ('hat', 'model.hat'):
        cfg = Config.fromfile(DEMO_CONFIG)
        if where == 'hat':
            cfg.hat = None
        else:
            cfg.model.hat = None
        with pytest.raises(ValueError, match=rf'{where}=None would train with the default HAT '
                                             r'settings .* hat.adv_epochs=0 '
                                             r'hat.kl_after_adv=False'):
            apply_hat(cfg)


@pytest.mark.parametrize('rank', [0, 1])
def test_resume_says_which_file_it_loads_once_per_job(digits_root, tmp_path, rank, capsys):
    """mmengine prints "Loads checkpoint by local backend from path: ..." with print(), so
    every process of a resumed distributed run printed it; rank 0's copy is kept."""
    cfg = demo_train_cfg(digits_root, tmp_path, 'once', max_epochs=1, validate=False)
    cfg.custom_hooks = []
    HATRunner.from_cfg(cfg).train()
    cfg.resume, cfg.load_from = True, str(tmp_path / 'epoch_1.pth')
    cfg.train_cfg.max_epochs = 2
    runner = HATRunner.from_cfg(cfg)
    runner._rank = rank
    capsys.readouterr()
    runner.train()
    printed = capsys.readouterr().out
    assert ('Loads checkpoint by local backend from path' in printed) == (rank == 0), printed
    assert runner.epoch == 2 and runner._has_loaded

"""Long runs: divergence stops the run, checkpoints survive kills and full disks, resume
checks what it loads. (Exact resume: tests/test_phase_and_resume.py.)"""
import errno
import io
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import HOOKS

from hat_mm.engine import HATRunner
from hat_mm.utils import CheckpointError, check_checkpoint_file

from .runner_utils import DEMO_CONFIG, ROOT, demo_train_cfg, small_run_options, train


@HOOKS.register_module(force=True)
class _LearningRateBlowUp(Hook):
    """Test hook: from epoch ``at_epoch`` on, a learning rate that makes training diverge."""

    def __init__(self, at_epoch=1, lr=1e4):
        self.at_epoch, self.lr = at_epoch, lr

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.epoch >= self.at_epoch:
            for group in runner.optim_wrapper.param_groups:
                group['lr'] = self.lr


def _cfg(digits_root, work_dir, max_epochs=3, hooks=(), resume=False):
    cfg = demo_train_cfg(digits_root, work_dir, 'long', max_epochs=max_epochs,
                         custom_hooks=hooks, resume=resume, validate=False)
    cfg.default_hooks.checkpoint.max_keep_ckpts = 1
    return cfg


def _last_checkpoint(work_dir):
    return (work_dir / 'last_checkpoint').read_text().strip()


def _assert_good_checkpoint(path, epoch):
    check_checkpoint_file(path)
    ckpt = torch.load(path, map_location='cpu')
    assert ckpt['meta']['epoch'] == epoch
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())


def test_diverging_run_stops_and_keeps_the_last_finite_checkpoint(digits_root, tmp_path):
    runner = HATRunner.from_cfg(_cfg(digits_root, tmp_path, hooks=[
        dict(type='_LearningRateBlowUp', at_epoch=1)]))
    with pytest.raises(RuntimeError, match=r'Training stopped at iteration \d+ \(epoch 2, '
                                           r'batch \d\): .*(grad_norm|loss\w*)=(nan|inf)') as e:
        runner.train()
    msg = str(e.value)
    assert f'the last checkpoint is {tmp_path / "epoch_1.pth"}' in msg
    # mmengine's --resume restores the checkpoint's LR schedule: a lower LR needs a new run
    assert ('Start again with a lower learning rate (now 1e+04): optim_wrapper.optimizer.lr or '
            "a longer warm-up (param_scheduler): --resume continues the checkpoint's optimizer "
            "state and learning-rate schedule, not the config's.") in msg
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth']
    assert _last_checkpoint(tmp_path) == str(tmp_path / 'epoch_1.pth')
    _assert_good_checkpoint(tmp_path / 'epoch_1.pth', epoch=1)


def test_no_checkpoint_is_written_from_non_finite_weights(digits_root, tmp_path):
    """Without the divergence check (a config that drops it), the save itself refuses."""
    runner = HATRunner.from_cfg(_cfg(digits_root, tmp_path, max_epochs=1))
    runner.train()  # epoch_1.pth; the hook's next save would be epoch_2.pth
    hook = next(h for h in runner.hooks if 'CheckpointHook' in type(h).__name__)
    with torch.no_grad():
        runner.model.head.layers.head.bias[0] = float('nan')
    with pytest.raises(CheckpointError, match='not saving epoch_2.pth.*head.layers.head.bias'):
        hook.after_train_epoch(runner)
    # finite weights, but AdamW's second moment overflowed (a gradient of 1e21 without
    # clipping): the parameter no longer moves, and a resumed run would go on from it
    with torch.no_grad():
        runner.model.head.layers.head.bias[0] = 0.0
    bias = runner.model.head.layers.head.bias
    runner.optim_wrapper.optimizer.state[bias]['exp_avg_sq'][0] = float('inf')
    with pytest.raises(CheckpointError, match=r'not saving epoch_2.pth: the optimizer state is '
                                              r'not finite \(optimizer exp_avg_sq of '
                                              r'head.layers.head.bias holds NaN/inf\)'):
        hook.after_train_epoch(runner)
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth']
    assert _last_checkpoint(tmp_path) == str(tmp_path / 'epoch_1.pth')


class _FakeScaler:
    def __init__(self, scales):
        self.scales = list(scales)

    def is_enabled(self):
        return True

    def get_scale(self):
        return self.scales[0] if len(self.scales) == 1 else self.scales.pop(0)


def _fake_runner(scaler=None, clip=None):
    model = torch.nn.Linear(2, 2)
    wrapper = SimpleNamespace(loss_scaler=scaler, clip_grad_kwargs=clip, cast_dtype=None,
                              get_lr=lambda: {'lr': [0.1]})
    name = f'non-finite-{id(model)}'
    return SimpleNamespace(model=model, optim_wrapper=wrapper, epoch=0, iter=0,
                           message_hub=MessageHub.get_instance(name),
                           logger=MMLogger.get_instance(name, log_level=logging.ERROR))


def _step(hook, runner, **losses):
    runner.iter += 1
    hook.after_train_iter(runner, 0, outputs={k: torch.tensor(v) for k, v in losses.items()})


def test_non_finite_check_counts_only_what_loss_scaling_cannot_absorb():
    from hat_mm.engine import NonFiniteCheckHook
    nan = float('nan')
    # fp16 dynamic loss scaling: overflowing gradients halve the scale (skipped steps); normal
    scaler = _FakeScaler([2.0 ** 16, 2.0 ** 15, 2.0 ** 14, 2.0 ** 13, 2.0 ** 13])
    runner, hook = _fake_runner(scaler), NonFiniteCheckHook()
    hook.before_train(runner)
    runner.message_hub.update_scalar('train/grad_norm', float('inf'))
    for _ in range(4):
        _step(hook, runner, loss=1.0, loss_ce_adv=1.0)
    # a non-finite forward cannot be absorbed: 3 consecutive iterations (fp16 default) stop
    _step(hook, runner, loss=nan, loss_ce_adv=nan)
    _step(hook, runner, loss=1.0)  # recovered: the count starts again
    _step(hook, runner, loss=nan)
    _step(hook, runner, loss=nan)
    runner.message_hub.update_info('last_ckpt', 'epoch_3.pth')
    with pytest.raises(RuntimeError, match=r'iteration 10 .*loss=nan.*3 consecutive.*') as e:
        _step(hook, runner, loss=nan)
    # what applies to a resumed run (it keeps the checkpoint's LR schedule), and what does not
    assert ('the last checkpoint is epoch_3.pth. Continue from the last checkpoint with '
            '--resume and gradient clipping: optim_wrapper.clip_grad=dict(max_norm=1.0) or '
            '--amp bf16 instead of fp16, or start again with a lower learning rate (now 0.1): '
            'optim_wrapper.optimizer.lr or a longer warm-up (param_scheduler): --resume') \
        in str(e.value)
    # the scale collapsing below min_loss_scale counts as well
    runner = _fake_runner(_FakeScaler([2.0, 1.0, 0.5, 0.25]))
    hook = NonFiniteCheckHook(max_bad_steps=2)
    hook.before_train(runner)
    _step(hook, runner, loss=1.0)  # 2 -> 1: still allowed
    _step(hook, runner, loss=1.0)  # 1 -> 0.5: bad
    with pytest.raises(RuntimeError, match='loss scale 0.25 after another overflow'):
        _step(hook, runner, loss=1.0)
    # fp32: one non-finite gradient norm stops at once, and clipping is not suggested twice
    runner, hook = _fake_runner(clip=dict(max_norm=1.0)), NonFiniteCheckHook()
    hook.before_train(runner)
    runner.message_hub.update_scalar('train/grad_norm', nan)
    with pytest.raises(RuntimeError, match='grad_norm=nan') as e:
        _step(hook, runner, loss=1.0)
    assert 'gradient clipping' not in str(e.value) and 'bf16' not in str(e.value)
    # non-finite weights stop even under loss scaling, without waiting
    runner, hook = _fake_runner(_FakeScaler([8.0])), NonFiniteCheckHook()
    hook.before_train(runner)
    with torch.no_grad():
        runner.model.bias[1] = math.inf
    with pytest.raises(RuntimeError, match=r'weights are no longer finite \(first: bias\)'):
        _step(hook, runner, loss=1.0)
    with pytest.raises(ValueError, match='max_bad_steps'):
        NonFiniteCheckHook(max_bad_steps=0)


def test_non_finite_check_reads_losses_that_require_grad_without_a_warning():
    """mmdet's and mmseg's logged losses still require grad: ``float()`` of one warned in
    every iteration of a detection or segmentation run."""
    from hat_mm.engine import NonFiniteCheckHook
    runner, hook = _fake_runner(), NonFiniteCheckHook()
    hook.before_train(runner)
    weight = torch.ones((), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        hook.after_train_iter(runner, 0, outputs={'loss': weight * 2, 'acc': weight})
    with pytest.raises(RuntimeError, match='loss_bbox=nan'):
        hook.after_train_iter(runner, 1, outputs={'loss_bbox': weight * float('nan')})


def test_a_resumed_run_names_the_checkpoint_it_resumed_from():
    """Before: the path the checkpoint's message hub recorded when it was saved, in the
    original folder of a work dir copied since."""
    from hat_mm.engine import NonFiniteCheckHook
    runner, hook = _fake_runner(), NonFiniteCheckHook()
    runner.message_hub.update_info('last_ckpt', '/old/work_dir/epoch_2.pth')  # as loaded
    runner._resume, runner._load_from = True, '/copy/work_dir/epoch_2.pth'
    hook.before_train(runner)
    with pytest.raises(RuntimeError, match='the last checkpoint is /copy/work_dir/epoch_2.pth'):
        _step(hook, runner, loss=float('nan'))


def _rank_of_two(rank, port, results):
    """One of two gloo processes: rank 1's loss is NaN (an fp16 overflow of its own forward),
    rank 0's finite; max_bad_steps=2."""
    from datetime import timedelta

    import torch.distributed as dist

    from hat_mm.engine import NonFiniteCheckHook
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=2, timeout=timedelta(seconds=60))
    try:
        runner, hook = _fake_runner(_FakeScaler([8.0])), NonFiniteCheckHook(max_bad_steps=2)
        hook.before_train(runner)
        loss = float('nan') if rank == 1 else 1.0
        said = []
        for _ in range(3):
            try:
                _step(hook, runner, loss=loss)
                said.append('went on')
            except RuntimeError as e:
                said.append(str(e))
                break
        results[rank] = said
    finally:
        dist.destroy_process_group()


def test_every_rank_stops_at_the_same_iteration():
    """Before: rank 1 stopped alone at its second NaN loss, and rank 0 trained on into the
    next gradient all-reduce, waiting there until the collective timeout."""
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rank_of_two, args=(port, results), nprocs=2, join=True)
    for rank in (0, 1):
        went_on, stopped = results[rank]  # the second iteration stops both
        assert went_on == 'went on' and stopped.startswith('Training stopped at iteration 3')
    assert 'loss=nan' in results[1][1] and 'rank' not in results[1][1].split(' (2 ')[0]
    assert 'non-finite values on rank 1 (its log names them)' in results[0][1]
    assert 'loss=' not in results[0][1]


class _DiskFull(io.FileIO):
    """A file on a full disk: half of the first write lands, then ENOSPC."""

    def write(self, data):
        super().write(memoryview(data)[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_keeps_the_previous_checkpoint(digits_root, tmp_path, monkeypatch):
    import builtins
    real_open = builtins.open

    def open_on_full_disk(file, mode='r', *args, **kwargs):
        if 'w' in mode and os.path.basename(str(file)) in ('epoch_2.pth', '.epoch_2.pth.tmp'):
            return _DiskFull(file, 'wb')
        return real_open(file, mode, *args, **kwargs)

    runner = HATRunner.from_cfg(_cfg(digits_root, tmp_path, max_epochs=2))
    monkeypatch.setattr(builtins, 'open', open_on_full_disk)
    with pytest.raises(OSError, match=f'could not write {tmp_path / "epoch_2.pth"} '
                                      r'\(No space left on device\)'):
        runner.train()
    monkeypatch.undo()
    assert not list(tmp_path.glob('.*tmp'))  # the partial file was removed
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth']
    assert _last_checkpoint(tmp_path) == str(tmp_path / 'epoch_1.pth')
    _assert_good_checkpoint(tmp_path / 'epoch_1.pth', epoch=1)


@HOOKS.register_module(force=True)
class _FillDisk(Hook):
    """Test hook: after the first checkpoint, other data fill the disk but for half of it."""
    priority = 'LOWEST'  # after the checkpoint is written

    def after_train_epoch(self, runner):
        if runner.epoch == 0:
            out = os.path.join(runner.work_dir, 'epoch_1.pth')
            disk = os.statvfs(out)
            left = disk.f_bavail * disk.f_frsize - os.path.getsize(out) // 2
            with open(os.path.join(os.path.dirname(out), 'other_data'), 'wb') as f:
                f.truncate(0)
                f.write(b'\0' * max(left, 0))


_ON_SMALL_DISK = r"""
import json, os, sys
sys.path.insert(0, {root!r})
from hat_mm.engine import HATRunner
from tests.test_long_runs import _cfg
work = {work!r}
try:
    HATRunner.from_cfg(_cfg({digits!r}, work, max_epochs=2,
                            hooks=[dict(type='_FillDisk')])).train()
    error = None
except OSError as e:
    error = str(e)
result = dict(error=error, files=sorted(os.listdir(work)),
              last=open(os.path.join(work, 'last_checkpoint')).read())
import torch
result['epoch'] = torch.load(os.path.join(work, 'epoch_1.pth'))['meta']['epoch']
print('RESULT', json.dumps(result))
"""


def _can_mount_tmpfs():
    try:
        return subprocess.run(['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs '
                               '"$(mktemp -d)"'], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _can_mount_tmpfs(), reason='needs `unshare -rm` to mount a tmpfs')
def test_really_full_disk_keeps_the_previous_checkpoint(digits_root, tmp_path):
    """The work dir on a 64 MB tmpfs that other data fill after the first checkpoint."""
    import json
    work = tmp_path / 'work'
    work.mkdir()
    script = _ON_SMALL_DISK.format(root=ROOT, work=str(work), digits=digits_root)
    res = subprocess.run(['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=64m tmpfs "$1" '
                          '&& exec "$2" -c "$3"', 'sh', str(work), sys.executable, script],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    line = next((x for x in res.stdout.splitlines() if x.startswith('RESULT ')), None)
    assert line, res.stdout[-3000:]
    result = json.loads(line[len('RESULT '):])
    assert result['error'].endswith(f'could not write {work / "epoch_2.pth"} (No space left on '
                                    f'device); the partial file was removed and '
                                    f'{work / "epoch_2.pth"} is unchanged')
    pth = [f for f in result['files'] if 'pth' in f]
    assert pth == ['epoch_1.pth']  # no partial file, the previous checkpoint kept
    assert result['last'] == str(work / 'epoch_1.pth') and result['epoch'] == 1


_KILLED_MID_SAVE = r'''
import builtins, io, os, sys, time
sys.path.insert(0, {root!r})
real_open = builtins.open


class Stuck(io.FileIO):
    def write(self, data):  # half of the checkpoint reaches the disk, then the job hangs
        super().write(memoryview(data)[:len(data) // 2])
        os.fsync(self.fileno())
        real_open({marker!r}, 'w').close()
        time.sleep(600)


def slow_open(file, mode='r', *args, **kwargs):
    if 'w' in mode and os.path.basename(str(file)) in ('epoch_2.pth', '.epoch_2.pth.tmp'):
        return Stuck(file, 'wb')
    return real_open(file, mode, *args, **kwargs)


builtins.open = slow_open
from hat_mm.engine import HATRunner
from tests.test_long_runs import _cfg
HATRunner.from_cfg(_cfg({digits!r}, {work!r})).train()
'''


def test_kill_during_save_keeps_the_previous_checkpoint(digits_root, tmp_path):
    work, marker = tmp_path / 'work', tmp_path / 'saving'
    script = _KILLED_MID_SAVE.format(root=ROOT, marker=str(marker), digits=digits_root,
                                     work=str(work))
    proc = subprocess.Popen([sys.executable, '-c', script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    try:
        deadline = time.time() + 300
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), proc.stdout.read().decode()[-3000:] if proc.poll() else ''
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    # the half-written file is not a checkpoint anyone will find; the previous one is intact
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_1.pth']
    assert _last_checkpoint(work) == str(work / 'epoch_1.pth')
    _assert_good_checkpoint(work / 'epoch_1.pth', epoch=1)
    # the requeued job resumes from it and finishes
    resumed = HATRunner.from_cfg(_cfg(digits_root, work, resume=True))
    resumed.train()
    assert resumed.epoch == 3
    assert sorted(p.name for p in work.glob('*.pth')) == ['epoch_3.pth']
    assert not list(work.glob('.*tmp'))
    _assert_good_checkpoint(work / 'epoch_3.pth', epoch=3)


@pytest.fixture(scope='module')
def one_epoch_checkpoint(digits_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('one_epoch')
    res = train(DEMO_CONFIG, work, small_run_options(digits_root, train_images=64))
    assert res.returncode == 0, res.stdout[-3000:]
    return work / 'epoch_1.pth'


def test_resume_without_a_checkpoint_says_so_and_starts_at_epoch_0(digits_root, tmp_path):
    res = train(DEMO_CONFIG, tmp_path, small_run_options(digits_root, train_images=32),
                extra=['--resume'])
    assert res.returncode == 0, res.stdout[-3000:]
    assert (f'--resume: no checkpoint found in {tmp_path} (no last_checkpoint file); '
            'training starts from epoch 0.') in res.stdout
    assert 'Auto resumed from the latest checkpoint None' not in res.stdout
    assert 'Epoch(train) [1][1/1]' in res.stdout and (tmp_path / 'epoch_1.pth').is_file()


@pytest.mark.parametrize('runner_type', ['HATRunner', 'Runner'])
def test_resume_with_another_architecture_names_the_mismatch(one_epoch_checkpoint, digits_root,
                                                             tmp_path, runner_type):
    """A 3-layer model resumed from the 4-layer demo's checkpoint (both runner types)."""
    res = train(DEMO_CONFIG, tmp_path, small_run_options(digits_root, train_images=32) + [
        'model.backbone.arch.num_layers=3', f'runner_type={runner_type}'],
        extra=['--resume', str(one_epoch_checkpoint)])
    assert res.returncode != 0
    assert (f'resume checkpoint {one_epoch_checkpoint} does not match the model of this '
            'config (not in model: backbone.layers.3.ln1.weight, backbone.layers.3.ln1.bias, '
            'backbone.layers.3.attn.qkv.weight, ') in res.stdout
    assert ' ... (12 in all)). Resume with the config the checkpoint was trained with' \
        in res.stdout
    assert 'unexpected key' not in res.stdout  # stopped before loading anything
    assert not list(tmp_path.glob('*.pth'))


def test_auto_resume_refuses_unsafe_checkpoints_without_suggesting_to_trust_them(
        digits_root, tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, ('echo pwned > ' + str(tmp_path / 'pwned'), ))

    evil = tmp_path / 'epoch_5.pth'
    torch.save({'state_dict': {}, 'meta': {'epoch': 5}, 'x': RunsCode()}, evil)
    (tmp_path / 'last_checkpoint').write_text(str(evil))
    res = train(DEMO_CONFIG, tmp_path, small_run_options(digits_root, train_images=32),
                extra=['--resume'])
    assert res.returncode != 0
    assert (f'resume checkpoint {evil} holds objects that are not plain weights (Trying to '
            'load unsupported GLOBAL posix.system') in res.stdout
    assert 'weights_only' not in res.stdout and 'add_safe_globals' not in res.stdout
    assert not (tmp_path / 'pwned').exists()


@pytest.mark.parametrize('where', ['state_dict', 'optimizer', 'load_from'])
def test_checkpoints_with_non_finite_values_are_refused_before_loading(
        one_epoch_checkpoint, digits_root, tmp_path, where):
    """A checkpoint of a run that diverged without the check (an older or another runner's):
    resumed, it trained one iteration and the check sent the user back to it with --resume."""
    path = tmp_path / 'epoch_1.pth'
    ckpt = torch.load(one_epoch_checkpoint, map_location='cpu')
    if where == 'optimizer':
        ckpt['optimizer']['state'][0]['exp_avg'].view(-1)[0] = float('nan')
    else:
        ckpt['state_dict']['backbone.pos_embed'].view(-1)[0] = float('inf')
    torch.save(ckpt, path)
    cfg = _cfg(digits_root, tmp_path / 'next', max_epochs=2, resume=where != 'load_from')
    cfg.load_from = str(path)
    runner = HATRunner.from_cfg(cfg)
    first = ('optimizer exp_avg of backbone.cls_token' if where == 'optimizer' else
             'backbone.pos_embed')
    what = 'load_from' if where == 'load_from' else 'resume'
    with pytest.raises(CheckpointError, match=rf'{what} checkpoint {path} holds NaN/inf values '
                                              rf'\(first: {first}\): it was saved after training '
                                              r'had diverged .* Nothing was loaded'):
        runner.train()
    assert runner.iter == 0 and not list((tmp_path / 'next').glob('*.pth'))
    assert bool(torch.isfinite(runner.model.backbone.pos_embed).all())


def test_legacy_files_need_torchs_magic_number(tmp_path):
    legacy = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}}, legacy, _use_new_zipfile_serialization=False)
    check_checkpoint_file(str(legacy))
    for name, data in (('pickle.pth', b'\x80\x04\x95' + b'\x00' * 64),  # any other pickle
                       ('junk.pth', b'\x80' + os.urandom(200))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f'{name} is corrupt'):
            check_checkpoint_file(str(tmp_path / name))


def test_converted_and_written_files_are_never_partial(tmp_path, monkeypatch):
    """write_atomically (checkpoints, last_checkpoint, converted releases) on a full disk."""
    import builtins

    from hat_mm.utils import write_atomically
    target = tmp_path / 'out.pth'
    target.write_bytes(b'old')
    real_open = builtins.open
    monkeypatch.setattr(builtins, 'open', lambda f, mode='r', *a, **k: _DiskFull(f, 'wb')
                        if 'w' in mode else real_open(f, mode, *a, **k))
    with pytest.raises(OSError, match=f'could not write {target}'):
        write_atomically(str(target), b'new' * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b'old' and os.listdir(tmp_path) == ['out.pth']
    write_atomically(str(target), b'new')
    assert target.read_bytes() == b'new' and os.listdir(tmp_path) == ['out.pth']


def test_optimizer_state_is_named_by_parameter_when_the_groups_match():
    """A checkpoint's optimizer state names its parameters when the optimizer's groups hold
    as many parameters as the saved groups, and counts them by index otherwise."""
    from hat_mm.engine.non_finite_hook import optimizer_state_tensors
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    weights, biases = [m.weight for m in model], [m.bias for m in model]
    optimizer = torch.optim.AdamW([dict(params=weights), dict(params=biases)])
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    named = dict(optimizer_state_tensors(state, optimizer, model))
    assert torch.equal(named['optimizer exp_avg of 1.weight'],
                       optimizer.state[weights[1]]['exp_avg'])
    assert torch.equal(named['optimizer exp_avg_sq of 0.bias'],
                       optimizer.state[biases[0]]['exp_avg_sq'])
    other = torch.optim.AdamW([dict(params=weights + biases[:1]), dict(params=biases[1:])])
    for groups in (other, None):  # saved from other groups, or none given: by index
        keys = [k for k, _ in optimizer_state_tensors(state, groups, model)]
        assert 'optimizer exp_avg of parameter #3' in keys and not any('weight' in k for k in keys)
    assert list(optimizer_state_tensors(None, optimizer, model)) == []


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_names_its_last_checkpoint_and_the_resume(
        digits_root, tmp_path, sig):
    """Before: Ctrl-C ended in a traceback, SIGTERM (a preemption) silently; neither said
    which checkpoint to go on from. The run stops at the end of an iteration, so the line
    names the checkpoint that ``last_checkpoint`` names (a stop between mmengine's update of
    its record and the write of that file once made them differ)."""
    options = small_run_options(digits_root, train_images=32, val_images=16, epochs=200)
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir', str(tmp_path),
         '--no-validate', '--cfg-options', *options, 'default_hooks.checkpoint.interval=1'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'))
    deadline = time.time() + 300
    while not (tmp_path / 'epoch_1.pth').is_file() and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # into the next epochs
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out[-3000:]
    last = (tmp_path / 'last_checkpoint').read_text().strip()
    assert re.search(rf'Training stopped by {sig.name} in epoch \d+ \(iteration \d+\)\. The last '
                     rf'checkpoint is {re.escape(last)}: continue with the same command and '
                     rf'--resume', out), out[-3000:]
    assert 'Traceback' not in out

"""What ``--resume`` (without a path) starts from: a config's ``load_from`` when the work dir has
no checkpoint yet, and the work dir's own checkpoint when the work dir was moved or copied."""
import os
import re
import shutil

import pytest

from .runner_utils import DEMO_CONFIG, small_run_options, train


@pytest.fixture(scope='module')
def one_epoch_run(digits_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('one_epoch_run')
    res = train(DEMO_CONFIG, work, small_run_options(digits_root, train_images=32))
    assert res.returncode == 0, res.stdout[-3000:]
    return work


def test_auto_resume_without_a_checkpoint_starts_from_the_configs_load_from(
        one_epoch_run, digits_root, tmp_path):
    """A fine-tuning run (``load_from``) requeued with --resume before it saved anything
    starts from the load_from weights, not from random ones."""
    start = one_epoch_run / 'epoch_1.pth'
    res = train(DEMO_CONFIG, tmp_path, small_run_options(digits_root, train_images=32) + [
        f'load_from={start}'], extra=['--resume'])
    assert res.returncode == 0, res.stdout[-3000:]
    assert (f'--resume: no checkpoint found in {tmp_path} (no last_checkpoint file); '
            f"training starts from epoch 0 with the weights of the config's load_from "
            f'{start}.') in res.stdout
    assert f'Load checkpoint from {start}' in res.stdout  # mmengine loaded the weights
    assert 'resumed epoch' not in res.stdout
    assert (tmp_path / 'epoch_1.pth').is_file()
    # that start is the runner's, not a key of the config the run dumps beside its logs
    assert 'auto_resume_load_from' not in (tmp_path / 'hat_vit_digits.py').read_text()


def test_auto_resume_of_a_copied_work_dir_resumes_its_own_checkpoint(
        one_epoch_run, digits_root, tmp_path):
    """``last_checkpoint`` holds the path the run saved to; a copy of the work dir (or a
    moved one) resumes from the checkpoint of the same name in the copy."""
    copy = tmp_path / 'copy'
    shutil.copytree(one_epoch_run, copy)
    original_files = sorted(p.name for p in one_epoch_run.iterdir())
    res = train(DEMO_CONFIG, copy, small_run_options(digits_root, train_images=32, epochs=2),
                extra=['--resume'])
    assert res.returncode == 0, res.stdout[-3000:]
    assert (f'--resume: {copy}/last_checkpoint names {one_epoch_run}/epoch_1.pth, outside this '
            f'work dir (moved or copied?); resuming from {copy}/epoch_1.pth') in res.stdout
    assert f'Load checkpoint from {copy}/epoch_1.pth' in res.stdout
    assert 'resumed epoch: 1' in res.stdout and (copy / 'epoch_2.pth').is_file()
    assert sorted(p.name for p in one_epoch_run.iterdir()) == original_files


def test_auto_resume_of_a_moved_work_dir_without_that_file_names_last_checkpoint(
        one_epoch_run, digits_root, tmp_path):
    moved = tmp_path / 'moved'
    shutil.copytree(one_epoch_run, moved)
    (moved / 'last_checkpoint').write_text(str(tmp_path / 'gone' / 'epoch_1.pth'))
    (moved / 'epoch_1.pth').rename(moved / 'epoch_1_kept.pth')
    (moved / 'epoch_0_older.pth').write_bytes(b'')  # listed, not the newest
    os.utime(moved / 'epoch_0_older.pth', (0, 0))
    res = train(DEMO_CONFIG, moved, small_run_options(digits_root, train_images=32, epochs=2),
                extra=['--resume'])
    assert res.returncode != 0
    assert (f"--resume: {moved}/last_checkpoint names {tmp_path}/gone/epoch_1.pth, which does "
            f'not exist (a moved work dir?). Checkpoints in {moved}: epoch_0_older.pth, '
            f'epoch_1_kept.pth; resume one by its path, e.g. the newest: --resume '
            f'{moved}/epoch_1_kept.pth') in res.stdout


def test_load_from_of_another_architecture_is_refused_before_training(
        one_epoch_run, digits_root, tmp_path):
    """mmengine loads ``load_from`` non-strictly: a checkpoint of another width would train on
    from random weights, with its mismatch printed but not in the run's log."""
    res = train(DEMO_CONFIG, tmp_path, small_run_options(digits_root, train_images=32) + [
        f'load_from={one_epoch_run}/epoch_1.pth', 'model.backbone.arch.embed_dims=48',
        'model.head.in_channels=48'])
    assert res.returncode != 0
    assert (f'load_from checkpoint {one_epoch_run}/epoch_1.pth does not fit the model of this '
            "config: 1% of the backbone's values would load (shape mismatch: "
            'backbone.cls_token: checkpoint (1, 1, 96) vs model (1, 1, 48)') in res.stdout
    assert 'Epoch(train)' not in res.stdout and not list(tmp_path.glob('*.pth'))


def test_load_from_with_another_head_loads_the_backbone_and_logs_the_rest(
        one_epoch_run, digits_root, tmp_path):
    """Fine-tuning with another number of classes: the backbone loads; the head that does
    not is named in the run's log file."""
    res = train(DEMO_CONFIG, tmp_path, small_run_options(digits_root, train_images=32) + [
        f'load_from={one_epoch_run}/epoch_1.pth', 'model.head.num_classes=12',
        'data_preprocessor.num_classes=12'], extra=['--no-validate'])
    assert res.returncode == 0, res.stdout[-3000:]
    line = (f'load_from checkpoint {one_epoch_run}/epoch_1.pth does not fit the model of this '
            'config (shape mismatch: head.layers.head.weight: checkpoint (10, 96) vs model '
            '(12, 96), head.layers.head.bias: checkpoint (10,) vs model (12,)); these weights '
            'keep their initialisation')
    logs = list(tmp_path.glob('*/*.log'))
    assert line in res.stdout and line in logs[0].read_text()


def test_a_new_run_in_a_work_dir_with_checkpoints_loses_none_of_them(
        one_epoch_run, digits_root, tmp_path):
    """Without --resume a run starts over; mmengine would overwrite the earlier run's
    checkpoints of the same names one by one. They are moved aside first, and the log says
    where, before anything is trained."""
    work = tmp_path / 'work'
    shutil.copytree(one_epoch_run, work)
    before = (work / 'epoch_1.pth').read_bytes()
    res = train(DEMO_CONFIG, work, small_run_options(digits_root, train_images=32))
    assert res.returncode == 0, res.stdout[-3000:]
    (aside, ) = work.glob('earlier_run_*')
    said = res.stdout.index(
        f'{work} held the checkpoints of an earlier run (last: {one_epoch_run}/epoch_1.pth); '
        'this run starts from epoch 0 without them, and so that its checkpoints replace none '
        f'of them they were moved to {aside} (2 files). To continue the earlier run instead: '
        f'stop this one and train with --resume {aside}/epoch_1.pth')
    assert said < res.stdout.index('Epoch(train) [1]')
    assert (aside / 'epoch_1.pth').read_bytes() == before  # kept as it was
    assert (aside / 'last_checkpoint').is_file()
    assert (work / 'epoch_1.pth').read_bytes() != before  # the new run's own
    assert (work / 'last_checkpoint').read_text().strip() == str(work / 'epoch_1.pth')


def test_resuming_a_finished_run_says_nothing_is_left_to_train(
        one_epoch_run, digits_root, tmp_path):
    work = tmp_path / 'work'
    shutil.copytree(one_epoch_run, work)
    res = train(DEMO_CONFIG, work, small_run_options(digits_root, train_images=32),
                extra=['--resume', str(work / 'epoch_1.pth')])
    assert res.returncode == 0, res.stdout[-3000:]
    assert (f'--resume: {work}/epoch_1.pth ends at epoch 1 and this config trains to '
            'train_cfg.max_epochs=1: nothing is left to train (raise train_cfg.max_epochs to '
            'train on)') in res.stdout
    assert 'Epoch(train)' not in res.stdout


# -- the same checks on a runner that is not HATRunner (tools/train.py calls them before the
# -- train loop is built), and on models without a backbone --------------------------------
class _Logs:
    def __init__(self):
        self.lines = []

    def warning(self, msg):
        self.lines.append(msg)

    info = warning


def _stub_runner(work_dir, model, load_from=None, resume=False, out_dir=None, max_epochs=2):
    from types import SimpleNamespace

    from mmengine.config import Config
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                                         out_dir=out_dir))))
    return SimpleNamespace(
        _has_loaded=False, _resume=resume, _load_from=load_from, work_dir=str(work_dir),
        logger=_Logs(), cfg=cfg, model=model, optim_wrapper=None,
        _train_loop=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs))  # not built yet


def _save(path, model, epoch=1, key='state_dict'):
    import torch
    torch.save({key: model.state_dict(), 'meta': dict(epoch=epoch)}, path)
    return str(path)


def test_unbuilt_train_loop_still_gets_the_earlier_run_and_finished_run_warnings(tmp_path):
    import torch

    from hat_mm.engine import prepare_resume
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    ckpt = _save(tmp_path / 'epoch_3.pth', model, epoch=3)
    (tmp_path / 'last_checkpoint').write_text(ckpt)
    runner = _stub_runner(tmp_path, model)
    prepare_resume(runner, training=True)  # a new run into that work dir
    assert any('held the checkpoints of an earlier run' in m for m in runner.logger.lines)
    (aside, ) = tmp_path.glob('earlier_run_*')  # moved there, nothing overwritten
    assert sorted(os.listdir(aside)) == ['epoch_3.pth', 'last_checkpoint']
    os.replace(aside / 'epoch_3.pth', ckpt)
    os.replace(aside / 'last_checkpoint', tmp_path / 'last_checkpoint')
    runner = _stub_runner(tmp_path, model)
    prepare_resume(runner)  # tools/test.py's runner: not training, no warning
    assert runner.logger.lines == []
    runner = _stub_runner(tmp_path, model, resume=True)
    prepare_resume(runner, training=True)
    assert any('ends at epoch 3 and this config trains to train_cfg.max_epochs=2: nothing is '
               'left to train' in m for m in runner.logger.lines)


def test_load_from_fit_is_measured_on_models_without_a_backbone(tmp_path):
    """VOLO's classifier keeps its weights under ``model.``: another architecture is refused
    there too; a checkpoint that keeps its weights under 'model' is read as mmengine reads it
    ('state_dict' or the top level), which finds none: refused, where mmengine would load
    nothing."""
    import torch

    from hat_mm.engine.resume import check_load_from
    from hat_mm.utils import CheckpointError
    model = torch.nn.ModuleDict(dict(model=torch.nn.Linear(8, 8)))
    other = torch.nn.ModuleDict(dict(model=torch.nn.Linear(3, 3)))
    with pytest.raises(CheckpointError, match='0% of the backbone'):
        check_load_from(_stub_runner(tmp_path, model), _save(tmp_path / 'o.pth', other))
    with pytest.raises(CheckpointError, match=r"holds no state dict \(looked for "
                                              r"\['state_dict'\]; found model, meta\)"):
        check_load_from(_stub_runner(tmp_path, model),
                        _save(tmp_path / 'm.pth', model, key='model'))
    check_load_from(_stub_runner(tmp_path, model), _save(tmp_path / 's.pth', model))


def test_latest_checkpoint_through_a_symlink_or_in_out_dir_is_taken_as_it_is(tmp_path):
    import torch

    from hat_mm.engine.resume import latest_checkpoint_in
    model = torch.nn.Linear(2, 2)
    real = tmp_path / 'real'
    real.mkdir()
    (tmp_path / 'link').symlink_to(real)
    ckpt = _save(real / 'epoch_1.pth', model)
    (real / 'last_checkpoint').write_text(ckpt)
    logs = _Logs()
    assert latest_checkpoint_in(str(tmp_path / 'link'), logs) == ckpt and logs.lines == []
    # default_hooks.checkpoint.out_dir: saved outside the work dir by design
    work, out = tmp_path / 'work', tmp_path / 'out' / 'work'
    work.mkdir()
    out.mkdir(parents=True)
    elsewhere = _save(out / 'epoch_1.pth', model)
    (work / 'last_checkpoint').write_text(elsewhere)
    (work / 'epoch_1.pth').write_bytes(b'stale')
    assert latest_checkpoint_in(str(work), logs, str(tmp_path / 'out')) == elsewhere
    assert logs.lines == []


@pytest.mark.parametrize('content', ['', 'missing'])
def test_an_empty_or_dangling_last_checkpoint_is_refused_not_started_over(tmp_path, content):
    """An empty ``last_checkpoint`` (mmengine's CheckpointHook writes it in place: a kill in
    between leaves it empty) once meant "no checkpoint": the run started from epoch 0 and its
    rotation removed the earlier checkpoints. A name missing from the work dir is listed too."""
    import torch

    from hat_mm.engine import prepare_resume
    from hat_mm.utils import CheckpointError
    model = torch.nn.Linear(2, 2)
    _save(tmp_path / 'epoch_1.pth', model)
    named = tmp_path / 'epoch_2.pth'
    (tmp_path / 'last_checkpoint').write_text(str(named) if content else '\n')
    runner = _stub_runner(tmp_path, model, resume=True)
    what = 'is empty' if not content else f'names {named}, which does not exist (removed?)'
    with pytest.raises(CheckpointError, match=(
            f'--resume: {tmp_path}/last_checkpoint {re.escape(what)}. Checkpoints in '
            f'{tmp_path}: epoch_1.pth; resume one by its path, e.g. the newest: --resume '
            f'{tmp_path}/epoch_1.pth')):
        prepare_resume(runner, training=True)
    assert runner._resume and runner.logger.lines == []


def test_resume_needs_the_optimizer_and_schedule_and_says_when_the_config_lr_is_unused(
        tmp_path):
    """A best_* checkpoint (weights only) resumed its epoch with the warm-up restarted and
    Adam's moments at zero; a learning rate changed for the resumed run was silently unused."""
    from types import SimpleNamespace

    import torch

    from hat_mm.engine import prepare_resume
    from hat_mm.utils import CheckpointError
    model = torch.nn.Linear(2, 2)
    best = _save(tmp_path / 'best_accuracy_top1_epoch_3.pth', model, epoch=3)
    schedulers = [dict(type='LinearLR')]
    runner = _stub_runner(tmp_path, model, load_from=best, resume=True, max_epochs=5)
    runner.optim_wrapper, runner.param_schedulers = dict(optimizer=dict(type='SGD')), schedulers
    with pytest.raises(CheckpointError, match=(
            f'resume checkpoint {re.escape(best)} holds no state of the optimizer or the '
            'learning-rate schedule .*would restart them at epoch 3, from step 0. Resume from an '
            f'epoch checkpoint .* use --cfg-options load_from={re.escape(best)} without '
            '--resume')):
        prepare_resume(runner, training=True)
    saved = torch.optim.SGD(model.parameters(), lr=0.1)
    path = str(tmp_path / 'epoch_3.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=3), param_schedulers=[{}],
                    optimizer=saved.state_dict()), path)
    for lr, warned in ((0.1, False), (0.01, True)):
        runner = _stub_runner(tmp_path, model, load_from=path, resume=True, max_epochs=5)
        runner.param_schedulers = schedulers
        runner.optim_wrapper = SimpleNamespace(optimizer=torch.optim.SGD(model.parameters(),
                                                                         lr=lr))
        prepare_resume(runner)
        assert runner.logger.lines == ([
            f"--resume: this config's learning rate (0.01) differs from that of {path} (0.1); "
            "the resumed run continues the checkpoint's optimizer state and learning-rate "
            "schedule, with 0.1: the config's value has no effect."] if warned else [])


def test_a_damaged_latest_checkpoint_names_the_others_to_resume(tmp_path):
    """The file last_checkpoint names is truncated: the earlier ones are named, and the one
    to resume is the newest that holds an optimizer state (not a best_* one)."""
    import torch

    from hat_mm.engine import prepare_resume
    from hat_mm.utils import CheckpointError
    model = torch.nn.Linear(2, 2)
    good = _save(tmp_path / 'epoch_1.pth', model)
    data = open(good, 'rb').read()
    (tmp_path / 'epoch_2.pth').write_bytes(data[:len(data) // 2])
    _save(tmp_path / 'best_accuracy_top1_epoch_2.pth', model)
    os.utime(good, (0, 0))
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    with pytest.raises(CheckpointError, match=(
            f'resume checkpoint {tmp_path}/epoch_2.pth is corrupt: .* Other checkpoints in '
            f'{tmp_path}: best_accuracy_top1_epoch_2.pth, epoch_1.pth; resume one by its path, '
            f'e.g. the newest: --resume {tmp_path}/epoch_1.pth')):
        prepare_resume(_stub_runner(tmp_path, model, resume=True), training=True)


def test_a_scheduler_whose_end_was_the_first_runs_max_epochs_is_named(tmp_path):
    """mmengine fills a missing ``end`` with max_epochs and a resume restores it: resumed with
    more epochs, such a scheduler stops at the first run's end. Said for mmengine's
    schedulers; TimmCosineLR goes on (tests/test_timm_cosine_lr.py), and a scheduler whose
    end is in the config is left alone."""
    import torch

    from hat_mm.engine import prepare_resume
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = str(tmp_path / 'epoch_2.pth')
    saved = [dict(end=1, last_step=0), dict(end=2, last_step=0), dict(end=2, last_step=1)]
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=2), optimizer=optimizer
                    .state_dict(), param_schedulers=saved), path)
    for max_epochs, warned in ((2, False), (5, True)):
        runner = _stub_runner(tmp_path, model, load_from=path, resume=True,
                              max_epochs=max_epochs)
        runner.optim_wrapper = dict(optimizer=dict(type='SGD'))
        runner.cfg.param_scheduler = [dict(type='LinearLR', end=1),
                                      dict(type='CosineAnnealingLR', begin=1),
                                      dict(type='TimmCosineLR', cosine_epochs=4)]
        prepare_resume(runner, training=True)
        assert [line for line in runner.logger.lines if 'param_scheduler' in line] == ([
            f'--resume: param_scheduler.1 (CosineAnnealingLR) has no end in the config, so the '
            f'run that saved {path} ended it at its train_cfg.max_epochs, 2, and the resumed '
            'run keeps that end: its value stays as it is after epoch 2, up to max_epochs=5. '
            'A config that sets param_scheduler.1.end avoids this in a new run.'] if warned
            else [])

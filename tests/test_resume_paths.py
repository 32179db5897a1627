"""What ``--resume`` (without a path) starts from: a config's ``load_from`` when the work dir has
no checkpoint yet, and the work dir's own checkpoint when the work dir was moved or copied."""
import os
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

"""tools/train.py and tools/test.py as a user runs them, on the demo data."""
import glob
import importlib
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from .runner_utils import DEMO_CONFIG, run_tool, small_run_options, train


def test_train_then_test_demo_config(digits_root, tmp_path):
    work = tmp_path / 'work'
    res = train(DEMO_CONFIG, work, small_run_options(digits_root, epochs=1))
    assert res.returncode == 0, res.stdout[-4000:]
    out = res.stdout
    assert 'HAT: adversarial phase (K=3' in out
    assert 'loss_kl_adv' in out and 'loss_ce_clean' in out  # terms logged separately
    assert 'eta:' in out  # mmengine progress/ETA
    ckpt = work / 'epoch_1.pth'
    assert ckpt.is_file()
    import hat_mm  # noqa: F401  (its import allow-lists mmengine's checkpoint classes)
    meta = torch.load(ckpt, map_location='cpu')['meta']  # weights_only, default of torch
    assert meta['hat']['adv_iters'] == 3 and meta['hat']['adversarial'] is True

    metrics_file = tmp_path / 'metrics.json'
    res = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, str(ckpt), '--work-dir',
                    str(tmp_path / 'test'), '--out', str(metrics_file), '--cfg-options',
                    *small_run_options(digits_root)])
    assert res.returncode == 0, res.stdout[-4000:]
    metrics = json.loads(metrics_file.read_text())
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    assert metrics['accuracy/top5'] >= metrics['accuracy/top1']
    assert 'accuracy/top1' in res.stdout

    # the same evaluation on two processes (tools/dist_test.sh, gloo on CPU): each rank scores
    # half the images, mmengine gathers them: the same metrics
    dist_metrics = tmp_path / 'dist_metrics.json'
    res = run_tool(['bash', 'tools/dist_test.sh', DEMO_CONFIG, str(ckpt), '2', '--work-dir',
                    str(tmp_path / 'dist_test'), '--out', str(dist_metrics), '--cfg-options',
                    *small_run_options(digits_root)],
                   env={'PORT': '29519', 'PYTHON': sys.executable})
    assert res.returncode == 0, res.stdout[-4000:]
    assert 'Distributed launcher: pytorch' in res.stdout, res.stdout[-4000:]
    assert json.loads(dist_metrics.read_text()) == metrics


def test_compiled_training_validation_resume_and_test(digits_root, tmp_path):
    """The paper configs compile on GPUs; the same path on CPU (inductor): training with a
    smaller last batch, validation, the end of the adversarial phase, checkpoints, --resume
    and tools/test.py --compile, all with the compiled model. The checkpoint has the model's
    own keys and gives tools/test.py the accuracy the run validated, compiled or not."""
    work = tmp_path / 'work'
    compiled = ['hat.adv_epochs=1', 'model.compile.devices=[cpu]']
    # 96 images: batches of 64 and 32
    res = train(DEMO_CONFIG, work, small_run_options(digits_root, epochs=2) + compiled)
    assert res.returncode == 0, res.stdout[-4000:]
    assert res.stdout.count('model.compile: torch.compile() of VisionTransformer') == 1
    assert 'HAT: adversarial phase over at epoch 1' in res.stdout, res.stdout[-3000:]
    ckpt = torch.load(work / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert not [k for k in ckpt['state_dict'] if '_orig_mod' in k]

    options = small_run_options(digits_root, epochs=3) + compiled
    res = train(DEMO_CONFIG, work, options, extra=['--resume'])
    assert res.returncode == 0, res.stdout[-4000:]
    assert 'resumed epoch: 2' in res.stdout and 'model.compile: torch.compile()' in res.stdout
    validated = [line for line in res.stdout.splitlines()
                 if 'Epoch(val) [3]' in line and 'accuracy/top1' in line]
    top1 = float(validated[-1].split('accuracy/top1: ')[1].split()[0])

    # tools/test.py evaluates eager unless --compile: the same accuracy either way
    for extra in ([], ['--compile']):
        metrics_file = tmp_path / f'metrics{len(extra)}.json'
        res = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, str(work / 'epoch_3.pth'),
                        '--work-dir', str(tmp_path / 'test'), '--out', str(metrics_file),
                        *extra, '--cfg-options', *options])
        assert res.returncode == 0, res.stdout[-4000:]
        assert ('model.compile: torch.compile()' in res.stdout) == bool(extra)
        assert ("tools/test.py evaluates eager: the config's torch.compile is off"
                in res.stdout) == (not extra)
        assert json.loads(metrics_file.read_text())['accuracy/top1'] == pytest.approx(top1)


def test_missing_data_root_names_path_and_fix(tmp_path):
    missing = tmp_path / 'no_such_imagenet'
    res = run_tool([sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir',
                    str(tmp_path / 'w'), '--cfg-options',
                    f'train_dataloader.dataset.data_root={missing}'])
    assert res.returncode != 0
    assert str(missing) in res.stdout
    assert '--cfg-options train_dataloader.dataset.data_root=' in res.stdout
    assert not glob.glob(str(tmp_path / 'w' / '*.pth'))


def test_corrupt_checkpoint_is_refused_by_test_tool(digits_root, tmp_path):
    bad = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, bad)
    bad.write_bytes(bad.read_bytes()[:-300])  # truncated download
    res = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, str(bad), '--cfg-options',
                    *small_run_options(digits_root)])
    assert res.returncode != 0
    assert f'{bad} is corrupt' in res.stdout
    assert osp.getsize(bad) > 0  # left as it was


def _fake_srun(tmp_path):
    """An ``srun`` on PATH that records its arguments, PYTHONPATH and MKL_NUM_THREADS instead
    of launching."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n'
                    'echo "PYTHONPATH=$PYTHONPATH" >> "$SRUN_LOG"\n'
                    'echo "$MKL_NUM_THREADS" > "$SRUN_LOG.mkl"\n')
    srun.chmod(0o755)
    log = tmp_path / 'srun.log'
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               SRUN_LOG=str(log), GPUS='16')
    env.pop('CPUS_PER_TASK', None)
    env.pop('MKL_NUM_THREADS', None)
    return env, log


@pytest.mark.parametrize('script, entry, positional', [
    ('slurm_train.sh', 'train', ['configs/hat_vit_b.py', 'work_dirs/vit_b']),
    ('slurm_test.sh', 'test', ['configs/hat_vit_b.py', 'vit_b.pth']),
])
def test_slurm_launchers_run_one_task_per_gpu_with_the_slurm_launcher(
        tmp_path, script, entry, positional):
    env, log = _fake_srun(tmp_path)
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    subprocess.run(['bash', osp.join(root, 'tools', script), 'gpu', 'hat', *positional,
                    '--amp', '--cfg-options', 'hat.adv_iters=2'], env=env, check=True)
    recorded = log.read_text().split('\n')[:-1]
    srun_options, command = recorded[:8], recorded[8:-1]
    assert srun_options == ['-p', 'gpu', '--job-name=hat', '--gres=gpu:8', '--ntasks=16',
                            '--ntasks-per-node=8', '--cpus-per-task=8', '--kill-on-bad-exit=1']
    assert recorded[-1].startswith(f'PYTHONPATH={root}:')
    # mmengine's value for each process of a distributed run, set before it warns about it
    assert (tmp_path / 'srun.log.mkl').read_text() == '1\n'
    assert command[1:3] == ['-u', osp.join(root, 'tools', f'{entry}.py')]
    # what tools/train.py / tools/test.py make of the rest
    tool = importlib.import_module(f'tools.{entry}')
    args = tool.parse_args(command[3:])
    assert args.launcher == 'slurm' and args.amp and args.config == positional[0]
    assert args.cfg_options == {'hat.adv_iters': 2}
    if entry == 'train':
        assert args.work_dir == positional[1]
    else:
        assert args.checkpoint == positional[1]


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_launchers_print_their_usage(tmp_path, script):
    env, log = _fake_srun(tmp_path)
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    res = subprocess.run(['bash', osp.join(root, 'tools', script), 'gpu', 'hat', 'cfg.py'],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 2 and 'usage:' in res.stderr and not log.exists()


@pytest.mark.parametrize('argv', [['dist_train.sh', 'configs/hat_vit_t.py', '0'],
                                  ['dist_train.sh', '2', 'configs/hat_vit_t.py'],
                                  ['dist_test.sh', 'configs/hat_vit_t.py', 'x.pth', 'two']])
def test_launchers_refuse_a_gpu_count_that_is_not_one(argv):
    """Before: torchrun's bare AssertionError (0, -1) or "Unsupported nproc_per_node value:
    configs/..." (CONFIG and GPUS swapped)."""
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    res = subprocess.run(['bash', osp.join(root, 'tools', argv[0]), *argv[1:]],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    gpus = argv[2] if argv[0] == 'dist_train.sh' else argv[3]
    assert f'GPUS={gpus} is not a number of processes (GPUs) per node' in res.stderr
    assert f'usage: {osp.join(root, "tools", argv[0])} CONFIG ' in res.stderr

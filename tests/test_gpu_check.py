"""tools/gpu_check.sh / tools/analysis/gpu_check.py: the log checks, the table, and the reduced
CPU mode end to end on a part of the rows (the detection ops and ViT-T pretraining with
``--resume``; AMP rows skipped without CUDA)."""
import json
import os
import sys
import threading
import time

import pytest

from tools.analysis import gpu_check

from .runner_utils import run_tool

LOG = """\
11/26 06:04:17 - mmengine - INFO - HAT: adversarial phase (K=3, eps=0.00784314) until epoch 200
11/26 06:04:32 - mmengine - INFO - Epoch(train) [1][1/2]  base_lr: 1.0000e-06 lr: 1.9531e-09  \
eta: 0:00:15  time: 15.0168  data_time: 0.0605  memory: 812  loss: 27.6310  loss_ce_clean: \
6.9078  loss_ce_adv: 6.9078  loss_kl_adv: 0.0000
11/26 06:04:41 - mmengine - INFO - Epoch(train) [1][2/2]  base_lr: 1.1200e-04 lr: 2.1875e-07  \
eta: 0:00:00  time: 0.2500  data_time: 0.0679  memory: 1024  loss: 27.5000  loss_ce_clean: \
6.9000  loss_ce_adv: 6.8000  loss_kl_adv: 0.0003
11/26 06:04:45 - mmengine - INFO - Epoch(val) [1][1/1]    eta: 0:00:00  time: 0.9000  \
data_time: 0.0100  memory: 2048
11/26 06:04:50 - mmengine - INFO - Iter(train) [3/4]  lr: 1e-05  time: 0.3000  data_time: \
0.0100  memory: 900  decode.loss_ce: nan  aux.loss_ce: 1.5
"""


def test_log_parsing_and_checks():
    train = gpu_check.iteration_logs(LOG)
    assert [r['time'] for r in train] == [15.0168, 0.25, 0.3]
    assert train[1]['loss_kl_adv'] == 0.0003 and train[1]['lr'] == 2.1875e-07
    assert train[0]['memory'] == 812 and 'data_time' in train[0]
    assert [r['time'] for r in gpu_check.iteration_logs(LOG, 'val')] == [0.9]
    assert gpu_check.timing(train) == (0.3, 1024)  # median seconds, peak memory
    assert gpu_check.timing(train[1:]) == (pytest.approx(0.275), 1024)
    assert gpu_check.timing([]) == (None, None)

    assert gpu_check.loss_problems(train[:2], ('loss_ce_adv', 'loss_kl_adv')) == []
    assert gpu_check.loss_problems(train, ('loss_kl_adv',)) == [
        'decode.loss_ce not finite', 'loss_kl_adv not logged every iteration']
    assert gpu_check.loss_problems([]) == ['no training iteration logged']


def test_table_json_and_verdict():
    rows = [dict(name='ops', status='pass', sec_per_iter=None, peak_memory_mb=812,
                 wall_seconds=3.04, numbers='RoIAlign |diff| 0'),
            dict(name='pretrain/vit_t/fp32', status='pass', sec_per_iter=0.1234,
                 peak_memory_mb=None, wall_seconds=20.0, numbers='loss 6.9'),
            gpu_check.skipped('pretrain/vit_t/fp16', 'no CUDA')]
    table = gpu_check.markdown_table(rows).splitlines()
    assert table[0] == '| check | result | s/iter | peak GPU MB | wall s | numbers |'
    assert table[2] == '| ops | pass | - | 812 | 3.0 | RoIAlign /diff/ 0 |'  # no stray pipe
    assert table[3] == '| pretrain/vit_t/fp32 | pass | 0.123 | - | 20.0 | loss 6.9 |'
    assert table[4] == '| pretrain/vit_t/fp16 | skipped: no CUDA | - | - | 0.0 |  |'
    assert all(line.count('|') == 7 for line in table)
    assert gpu_check.all_passed(rows)
    assert not gpu_check.all_passed(rows + [dict(rows[0], status='FAIL: x')])
    names = gpu_check.row_names()
    assert names[0] == 'ops' and names[-2:] == ['det/swin_t', 'seg/swin_t']
    assert {n for n in names if n.startswith('pretrain/')} == {
        f'pretrain/{m}/{p}' for m in ('swin_t', 'vit_t', 'vit_b')
        for p in ('fp32', 'fp16', 'bf16')}
    with pytest.raises(SystemExit, match='--rows nothing matches no row of: ops pretrain'):
        gpu_check.main(['--rows', 'nothing'])


def test_row_reports_failures_and_timeouts(tmp_path):
    row = gpu_check.Row('a/b', str(tmp_path), timeout=60)
    out = row.train([sys.executable, '-c', f'print({LOG!r})'], ('loss_kl_adv',))
    assert 'Epoch(train)' in out and row.status == 'FAIL: decode.loss_ce not finite'
    row.train([sys.executable, '-c', f'print({LOG!r}.replace("0.3000", "0.5000"))'])
    result = row.result()  # the first iteration of each run is not timed (warm-up)
    assert result['sec_per_iter'] == pytest.approx(0.275) and result['peak_memory_mb'] == 2048
    assert result['log'].endswith('a_b.log') and 'Epoch(val)' in (tmp_path / 'a_b.log').read_text()

    row = gpu_check.Row('exit', str(tmp_path), timeout=60)
    row.run([sys.executable, '-c', 'import sys; sys.exit(3)'])
    assert row.status.startswith('FAIL: python') and 'exited with 3' in row.status
    assert row.expect(False, 'later problem') is False and 'exited with 3' in row.status

    row = gpu_check.Row('slow', str(tmp_path), timeout=2)
    row.run([sys.executable, '-c', 'import time; print("started", flush=True); time.sleep(60)'])
    assert row.status == 'FAIL: timed out after 2 s'
    assert 'started' in row.outputs[0] and row.result()['wall_seconds'] < 30


class FakeCheck:
    """Rows that take ``seconds[name]`` and record when they start and end."""

    def __init__(self, seconds):
        self.seconds, self.events, self.lock = seconds, [], threading.Lock()

    def run_row(self, name):
        with self.lock:
            self.events.append(('start', name))
        time.sleep(self.seconds.get(name, 0.05))
        with self.lock:
            self.events.append(('end', name))
        return dict(name=name)


@pytest.mark.parametrize('jobs', [1, 3])
def test_rows_run_jobs_at_a_time_downstream_after_swin(jobs):
    names = gpu_check.row_names()
    check = FakeCheck({'pretrain/swin_t/fp32': 0.3, 'pretrain/vit_b/bf16': 0.6})
    reported = []
    results = gpu_check.run_rows(check, names, jobs, reported.append)
    assert [r['name'] for r in results] == names  # the table keeps the rows' order
    assert sorted(r['name'] for r in reported) == sorted(names)
    running, most = set(), 0
    for kind, name in check.events:
        running.add(name) if kind == 'start' else running.discard(name)
        most = max(most, len(running))
    assert most == jobs
    order = [(kind, name) for kind, name in check.events]
    swin_end = order.index(('end', 'pretrain/swin_t/fp32'))
    for row in ('det/swin_t', 'seg/swin_t'):
        assert order.index(('start', row)) > swin_end
    if jobs > 1:  # they need not wait for the slow ViT-B row
        assert order.index(('start', 'det/swin_t')) < order.index(('end', 'pretrain/vit_b/bf16'))
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--jobs', '0'])


def test_cpu_mode_end_to_end(tmp_path):
    work = tmp_path / 'check'
    res = run_tool(['bash', 'tools/gpu_check.sh', '--work-dir', str(work), '--rows', 'ops',
                    'pretrain/vit_t/*', 'det/*', '--jobs', '2'], env={'PYTHON': sys.executable},
                   timeout=900)
    assert res.returncode == 0, res.stdout[-4000:]
    summary = json.loads((work / 'gpu_check.json').read_text())
    assert summary['passed'] is True and summary['device'].startswith('CPU')
    assert summary['jobs'] == 2
    rows = {r['name']: r for r in summary['rows']}
    assert list(rows) == ['ops', 'pretrain/vit_t/fp32', 'pretrain/vit_t/fp16',
                          'pretrain/vit_t/bf16', 'det/swin_t']
    assert rows['ops']['status'] == 'pass' and 'same: True' in rows['ops']['numbers']
    vit = rows['pretrain/vit_t/fp32']
    assert vit['status'] == 'pass' and vit['sec_per_iter'] > 0
    assert vit['numbers'].startswith('2+2 iterations (resumed); loss ')
    assert rows['pretrain/vit_t/fp16']['status'] == 'skipped: no CUDA'
    assert rows['det/swin_t']['status'] == 'skipped: needs the checkpoint of pretrain/swin_t/fp32'
    # the logs are kept, the checkpoints are not
    log = (work / 'pretrain_vit_t_fp32.log').read_text()
    assert 'resumed epoch: 1' in log and 'loss_kl_adv' in log and '--no-validate' in log
    assert not [f for _, _, files in os.walk(work) for f in files if f.endswith('.pth')]
    table = (work / 'gpu_check.md').read_text()
    assert '2 rows at a time (s/iter includes their load)' in table.splitlines()[0]
    assert '| pretrain/vit_t/fp32 | pass |' in table and '| ops | pass |' in res.stdout


def test_detection_and_segmentation_start_from_the_first_checkpoint_if_resume_fails(
        tmp_path, monkeypatch):
    """On the first GPU run every --resume failed, and det/seg, which waited for a passing
    pretrain/swin_t/fp32 row, never ran. The first half's checkpoint is enough for them."""
    def fake_train(self, cmd, required=(), env=None):
        resume = '--resume' in cmd
        if resume:
            self.fail('train.py exited with 1 (resume)')
            return 'TypeError: RNG state must be a torch.ByteTensor'
        os.makedirs(self.dir, exist_ok=True)
        open(os.path.join(self.dir, 'epoch_1.pth'), 'w').close()
        return 'HAT: adversarial phase (K=3, eps=0.0078) until epoch 200'

    monkeypatch.setattr(gpu_check.Row, 'train', fake_train)
    check = gpu_check.GpuCheck(str(tmp_path), dict(imagenet=str(tmp_path / 'data')), False, 1,
                               60, False)
    row = check.run_row(gpu_check.SWIN_FP32)
    assert row['status'].startswith('FAIL: train.py exited with 1 (resume)')
    assert check.swin_checkpoint == str(tmp_path / 'pretrain_swin_t_fp32' / 'epoch_1.pth')
    assert os.path.isfile(check.swin_checkpoint)  # kept for det and seg

    # a first half that fails leaves no checkpoint to start from
    def broken_train(self, cmd, required=(), env=None):
        self.fail('train.py exited with 1')
        return ''
    monkeypatch.setattr(gpu_check.Row, 'train', broken_train)
    check = gpu_check.GpuCheck(str(tmp_path / 'b'), dict(imagenet=str(tmp_path / 'data')),
                               False, 1, 60, False)
    check.run_row(gpu_check.SWIN_FP32)
    assert check.swin_checkpoint is None
    assert check.run_row('det/swin_t')['status'] == \
        'skipped: needs the checkpoint of pretrain/swin_t/fp32'


def test_pretrain_rows_run_eager_and_dist_train_checks_the_compiled_default(tmp_path,
                                                                            monkeypatch):
    """The paper configs compile on CUDA: the nine pretraining rows turn that off (twice a
    compile per row would take minutes each), ``dist_train`` runs the config as a user's first
    command does (bf16, compiled, twice the row time) and fails if nothing was compiled."""
    calls = []

    def fake_train(self, cmd, required=(), env=None):
        calls.append((self.name, self.timeout, cmd))
        os.makedirs(self.dir, exist_ok=True)
        for epoch in (1, 2):
            open(os.path.join(self.dir, f'epoch_{epoch}.pth'), 'w').close()
        said = ["type='AmpOptimWrapper' dtype='bfloat16'", 'resumed epoch: 1',
                'Epoch(train) [2]', 'HAT: adversarial phase (K=3', 'GPU number: 1',
                "Distributed training: True backend='nccl'"]
        if compiled:
            said.append('model.compile: torch.compile() of VisionTransformer, '
                        'VisionTransformerClsHead')
        return '\n'.join(said)

    monkeypatch.setattr(gpu_check.Row, 'train', fake_train)
    check = gpu_check.GpuCheck(str(tmp_path), dict(imagenet=str(tmp_path / 'data')), True, 1,
                               60, False)
    compiled = False
    assert check.run_row('pretrain/vit_b/bf16')['status'] == 'pass'
    for name, timeout, cmd in calls:
        assert timeout == 60 and 'model.compile=None' in cmd
    assert len(calls) == 2 and '--resume' in calls[1][2]
    calls.clear()
    row = check.run_row('dist_train/vit_t')
    assert row['status'] == 'FAIL: the model was not compiled (model.compile of the config)'
    (name, timeout, cmd), = calls
    assert timeout == 120 and 'model.compile=None' not in cmd
    assert cmd[:4] == ['bash', 'tools/dist_train.sh', 'configs/hat_vit_t.py', '1']
    assert cmd[cmd.index('--amp') + 1] == 'bf16'
    compiled = True
    row = check.run_row('dist_train/vit_t')
    assert row['status'] == 'pass' and row['numbers'].startswith('1 processes, nccl, bf16, '
                                                                 'compiled')

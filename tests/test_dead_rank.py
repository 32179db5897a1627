"""A rank that dies or hangs ends a two-node job within the collective timeout, and the
survivor names it (two tools/dist_train.sh launchers, NNODES=2, gloo on CPU)."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest
from mmengine.config import Config

from hat_mm.utils import DEFAULT_COLLECTIVE_TIMEOUT_S, set_collective_timeout

from .runner_utils import DEMO_CONFIG, ROOT, small_run_options


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _children(pid):
    try:
        with open(f'/proc/{pid}/task/{pid}/children') as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _launch(node, options, work_dir, port):
    env = dict(os.environ, NNODES='2', NODE_RANK=str(node), PORT=str(port),
               PYTHON=sys.executable, OMP_NUM_THREADS='1',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', DEMO_CONFIG, '1', '--work-dir', str(work_dir),
         '--cfg-options', *options], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc')
@pytest.mark.parametrize('sig', ['SIGKILL', 'SIGSTOP'])
def test_lost_rank_ends_the_job_and_is_named(digits_root, tmp_path, sig):
    """SIGKILL: the peer's sockets close; SIGSTOP: they stay open (a hung rank, or a node
    gone without closing its connections), which before blocked rank 0 for gloo's 30 min."""
    options = small_run_options(digits_root, train_images=96, epochs=100) + [
        'train_dataloader.batch_size=8', 'val_cfg=None', 'val_dataloader=None',
        'val_evaluator=None', 'env_cfg.dist_cfg.timeout=10']
    port = _free_port()
    launched = [_launch(node, options, tmp_path / f'node{node}', port) for node in (0, 1)]
    (node0, out0), (node1, _) = launched
    worker = None
    try:
        deadline = time.monotonic() + 300
        started = re.compile(r'Epoch\(train\)\s+\[1\]\[\s*2/')  # a few iterations in
        while not any(started.search(line) for line in out0):
            assert node0.poll() is None, ''.join(out0)[-4000:]
            assert time.monotonic() < deadline, 'training did not start'
            time.sleep(0.1)
        torchrun = _children(node1.pid)  # bash -> torchrun -> the rank-1 worker
        worker = _children(torchrun[0])[0]
        os.kill(worker, getattr(signal, sig))
        try:
            rc = node0.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f'rank 0 still runs 120 s after {sig} of rank 1')
    finally:
        if worker is not None and sig == 'SIGSTOP':
            os.kill(worker, signal.SIGKILL)
        for proc, _ in launched:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the sessions this test started
            except ProcessLookupError:
                pass
            proc.wait()
    time.sleep(0.5)  # the reader thread drains the pipe
    text = ''.join(out0)
    assert rc != 0, text[-4000:]
    assert 'LostRankError' in text and 'Lost rank 1 (host ' in text, text[-4000:]
    if sig == 'SIGSTOP':  # the collective timeout (10 s) ended it
        failed = re.search(r'a collective failed \((.*?)\)\. ', text)
        assert failed and re.search(r'time ?out|timed out', failed.group(1), re.I), \
            text[-4000:]


def test_heartbeat_tells_lost_from_failed_and_alive_ranks():
    """Four ranks in one store: 0 watches 1 (which never beats), 2 beats, 3 reported a
    failed collective."""
    import torch.distributed as dist

    from hat_mm.utils.rank_watch import RankWatch
    server = dist.TCPStore('127.0.0.1', 0, is_master=True, wait_for_workers=False)
    logger = mock.MagicMock()
    with mock.patch('hat_mm.utils.rank_watch.MMLogger.get_current_instance',
                    return_value=logger):
        watches = [RankWatch(server, r, 4, timeout=2.0) for r in (0, 2, 3)]
        for watch in watches:
            watch.start()
        watches[2].store.set('failed/3', '1')
        watches[2].stop(finished=False)  # rank 3 exits after its report
        time.sleep(2.0)  # > 6 intervals of 0.2 s
        errors = [c.args[0] for c in logger.error.call_args_list]
        assert len(errors) == 1 and errors[0].startswith(
            '[rank 0] rank 1 (host unknown) has sent no heartbeat for'), errors
        groups = watches[0].roll_call()
        assert (groups['lost'], groups['failed'], groups['alive']) == ([1], [3], [2])
        message = watches[0].describe(RuntimeError('gloo: Connection closed by peer'))
        assert 'Lost rank 1 (host unknown)' in message and 'fail too: 3.' in message
        assert watches[0].saw_stopped_rank and not watches[1].saw_stopped_rank
        for watch in watches[:2]:
            watch.stop(finished=True)


@pytest.mark.parametrize('message', [
    'Application timeout caused pair closure',  # gloo, re-raised by the autograd engine
    '[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer',
    'NCCL communicator was aborted on rank 0',
    '[c10d] The client socket has timed out after 10s while trying to connect'])
def test_errors_of_lost_peers_are_recognised(message):
    from hat_mm.utils.rank_watch import is_collective_error
    assert is_collective_error(RuntimeError(message))
    assert not is_collective_error(ValueError(message))


def test_watch_ranks_names_the_lost_rank_or_lets_other_errors_through():
    """A runtime error after the watched rank's heartbeat stopped becomes LostRankError even
    when its text names no backend; before that, such an error passes through unchanged."""
    import torch.distributed as dist

    from hat_mm.utils import rank_watch
    server = dist.TCPStore('127.0.0.1', 0, is_master=True, wait_for_workers=False)
    with mock.patch.object(rank_watch, '_default_store', return_value=server), \
            mock.patch.object(rank_watch.dist, 'is_initialized', return_value=True), \
            mock.patch.object(rank_watch.dist, 'get_world_size', return_value=2), \
            mock.patch.object(rank_watch.dist, 'get_rank', return_value=0), \
            mock.patch.object(rank_watch.MMLogger, 'get_current_instance'):
        with pytest.raises(RuntimeError, match='^CUDA out of memory$'):
            with rank_watch.watch_ranks(timeout=2.0):
                raise RuntimeError('CUDA out of memory')
        with pytest.raises(rank_watch.LostRankError, match=r'Lost rank 1 \(host unknown\)'):
            with rank_watch.watch_ranks(timeout=2.0) as watch:
                deadline = time.monotonic() + 10
                while not watch.saw_stopped_rank:  # rank 1 never beats: seen after 1.2 s
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                raise RuntimeError('an error whose text names no backend')


def test_collective_timeout_default_and_check(monkeypatch):
    for name in ('TORCH_NCCL_ASYNC_ERROR_HANDLING', 'NCCL_ASYNC_ERROR_HANDLING'):
        monkeypatch.delenv(name, raising=False)
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert set_collective_timeout(cfg) == DEFAULT_COLLECTIVE_TIMEOUT_S
    assert cfg.env_cfg.dist_cfg == dict(backend='nccl', timeout=DEFAULT_COLLECTIVE_TIMEOUT_S)
    assert 60 <= DEFAULT_COLLECTIVE_TIMEOUT_S <= 1800  # minutes, not hours
    assert os.environ['TORCH_NCCL_ASYNC_ERROR_HANDLING'] == '3'

    no_env_cfg = Config(dict(model=dict()))  # mmengine's default env_cfg, plus the timeout
    set_collective_timeout(no_env_cfg)
    assert no_env_cfg.env_cfg.dist_cfg == dict(backend='nccl',
                                               timeout=DEFAULT_COLLECTIVE_TIMEOUT_S)
    kept = Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=1800))))
    assert set_collective_timeout(kept) == 1800

    monkeypatch.setenv('TORCH_NCCL_ASYNC_ERROR_HANDLING', '0')
    with pytest.warns(UserWarning, match='job hangs'):
        set_collective_timeout(Config(dict()))
    for bad in ('10', -5, True):
        with pytest.raises(ValueError, match='env_cfg.dist_cfg.timeout'):
            set_collective_timeout(Config(dict(env_cfg=dict(dist_cfg=dict(timeout=bad)))))

"""Collective timeout, NCCL error handling and teardown for distributed runs.

A rank that dies or hangs leaves the others waiting inside a collective (DDP's gradient
all-reduce, a barrier, the gathering of validation results). They wait at most
``env_cfg.dist_cfg.timeout`` seconds -- mmengine's key, passed to ``init_process_group`` --
and then fail. :func:`set_collective_timeout` gives it a default in minutes when the config
leaves it out, and turns on NCCL's error handling, without which a timed-out NCCL collective
is logged but never ends the process. :func:`end_process_group` ends a finished run with a
barrier and ``destroy_process_group`` rather than leaving the teardown to the interpreter.
"""
import datetime
import os
import warnings

import torch
import torch.distributed as dist

DEFAULT_COLLECTIVE_TIMEOUT_S = 600  # 10 minutes (torch's own default for NCCL; gloo's is 30)
# torch >= 2.2 reads the first name, older releases the second
NCCL_ERROR_HANDLING_VARS = ('TORCH_NCCL_ASYNC_ERROR_HANDLING', 'NCCL_ASYNC_ERROR_HANDLING')
NCCL_BLOCKING_WAIT_VARS = ('TORCH_NCCL_BLOCKING_WAIT', 'NCCL_BLOCKING_WAIT')


def _env(names):
    return next((os.environ[n] for n in names if n in os.environ), None)


def set_collective_timeout(cfg) -> float:
    """Fill ``cfg.env_cfg.dist_cfg.timeout`` (seconds) when unset; return it.

    Also sets ``TORCH_NCCL_ASYNC_ERROR_HANDLING=3`` when the environment has no setting (torch's
    "tear the process down on a failed or timed-out collective", its default since 2.2; kept
    explicit so a job's timeout does not depend on the torch release), and warns when the
    environment turned NCCL's error handling off.
    """
    if cfg.get('env_cfg') is None:
        cfg.env_cfg = dict(dist_cfg=dict(backend='nccl'))  # mmengine Runner's default
    if cfg.env_cfg.get('dist_cfg') is None:
        cfg.env_cfg.dist_cfg = dict()
    timeout = cfg.env_cfg.dist_cfg.get('timeout')
    if timeout is None:
        timeout = cfg.env_cfg.dist_cfg.timeout = DEFAULT_COLLECTIVE_TIMEOUT_S
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(
            f'env_cfg.dist_cfg.timeout={timeout!r}: give the collective timeout in seconds, '
            f'e.g. --cfg-options env_cfg.dist_cfg.timeout=1800 (default '
            f'{DEFAULT_COLLECTIVE_TIMEOUT_S}).')

    handling = _env(NCCL_ERROR_HANDLING_VARS)
    if handling is None:
        os.environ[NCCL_ERROR_HANDLING_VARS[0]] = '3'
    elif handling.strip() == '0' and _env(NCCL_BLOCKING_WAIT_VARS) not in ('1', ):
        warnings.warn(
            f'{NCCL_ERROR_HANDLING_VARS[0]}=0 turns off NCCL error handling: a collective '
            f'that times out (env_cfg.dist_cfg.timeout={timeout} s) is only logged and the '
            'job hangs. Unset it (or set it to 3) so that a dead rank ends the job.')
    return float(timeout)


SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm')


def sync_bn_keys(cfg, prefix: str = '') -> list:
    """The keys of ``cfg`` (a config or a part of one) whose ``type`` is a SyncBN layer."""
    if isinstance(cfg, dict):
        here = [prefix[:-1]] if cfg.get('type') in SYNC_BN_TYPES else []
        return here + [k for key, value in cfg.items()
                       for k in sync_bn_keys(value, f'{prefix}{key}.')]
    if isinstance(cfg, (list, tuple)):
        return [k for i, value in enumerate(cfg) for k in sync_bn_keys(value, f'{prefix}{i}.')]
    return []


def init_cpu_process_group(cfg, launcher: str) -> None:
    """Start ``torch.distributed`` with gloo when launched on a machine without a GPU.

    mmengine's launcher would call ``torch.cuda.set_device``; on CPU the tools start the
    process group themselves, with the config's collective timeout. A model with SyncBN
    layers (the detection and segmentation configs) is refused: DDP runs them on GPUs only
    (one process on CPU reverts them to BN).
    """
    if launcher == 'none' or torch.cuda.is_available() or dist.is_initialized():
        return
    sync_bn = sync_bn_keys(cfg.get('model'), 'model.') + (
        [f"sync_bn={cfg['sync_bn']!r}"] if cfg.get('sync_bn') else [])
    if sync_bn:
        raise SystemExit(
            f'{len(sync_bn)} SyncBN layer(s) in this config ({", ".join(sync_bn[:3])}'
            f'{", ..." if len(sync_bn) > 3 else ""}): PyTorch runs SyncBN in several '
            'processes on GPUs only, and this machine has none. On CPU run one process '
            '(python tools/train.py CONFIG, or tools/test.py CONFIG CHECKPOINT), where mmengine '
            'turns SyncBN into BN; or train on GPUs.')
    timeout = cfg.env_cfg.dist_cfg.timeout
    dist.init_process_group(backend='gloo', timeout=datetime.timedelta(seconds=timeout))
    cfg.env_cfg.dist_cfg.backend = 'gloo'


def end_process_group() -> None:
    """Tear ``torch.distributed`` down at the end of a tool: wait until every rank is done,
    then destroy the process group. Left to the interpreter's exit, gloo's and the store's
    threads are torn down in no fixed order, and a rank sometimes ended with SIGABRT
    (``terminate called without an active exception``) after finishing its work, so a
    finished job exited non-zero."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

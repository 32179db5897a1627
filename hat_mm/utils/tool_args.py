"""What ``tools/train.py`` and ``tools/test.py`` share: the runner arguments of the command
line, the config they load (checked ``--cfg-options`` merged, launcher, work dir), and the
mixed-precision optim wrapper of ``--amp`` (also used by ``tools/analysis/benchmark_hat.py``)."""
import argparse
import contextlib
import os
import os.path as osp
import warnings

from mmengine.config import Config, DictAction

from .config_checks import check_cfg_options, check_config_file


def add_runner_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--work-dir``, ``--cfg-options``, ``--launcher``, ``--local-rank``."""
    parser.add_argument('--work-dir', help='where logs (and checkpoints) go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries, e.g. hat.adv_iters=2 '
                        'train_dataloader.batch_size=64')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


# The variable each launcher gives a process its global rank in (before the process group).
LAUNCHER_RANK_VARS = dict(pytorch='RANK', slurm='SLURM_PROCID', mpi='OMPI_COMM_WORLD_RANK')


def launcher_rank(launcher: str) -> int:
    """This process's rank as ``launcher`` gives it, readable before the process group
    exists (0 without a launcher)."""
    name = LAUNCHER_RANK_VARS.get(launcher)
    return int(os.environ.get(name, 0)) if name else 0


@contextlib.contextmanager
def warnings_of_first_rank(launcher: str):
    """Warnings of the checks made before the runner (the config, the environment) once per
    job, from rank 0, instead of once from every process: the other ranks drop theirs. (Once
    the runner is built, mmengine's logger keeps the other ranks' consoles for errors.)"""
    with warnings.catch_warnings():
        if launcher_rank(launcher) > 0:
            warnings.simplefilter('ignore')
        yield


def load_tool_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with the checked ``--cfg-options``, the launcher and the
    work dir applied; also exports ``LOCAL_RANK`` as the launchers expect."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if args.launcher == 'pytorch' and 'RANK' not in os.environ:
        raise SystemExit(
            "--launcher pytorch runs in the processes that torchrun starts (it reads their "
            'RANK, WORLD_SIZE, MASTER_ADDR, ...), and this one was not started by torchrun. '
            'Use bash tools/dist_train.sh CONFIG GPUS (or tools/dist_test.sh CONFIG CKPT GPUS), '
            'or torchrun --nproc_per_node=GPUS tools/train.py CONFIG --launcher pytorch; one '
            'process: leave --launcher out.')
    check_config_file(args.config, 'tools/test.py CONFIG CHECKPOINT'
                      if hasattr(args, 'checkpoint') else 'tools/train.py CONFIG')
    with warnings.catch_warnings():
        # mmengine finds the packages of `mmpretrain::` (...) bases through pkg_resources,
        # which setuptools deprecates with a warning at each lookup: nothing a user can act on
        warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                                category=UserWarning)
        cfg = Config.fromfile(args.config)
    with warnings_of_first_rank(args.launcher):
        check_cfg_options(cfg, args.cfg_options)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    check_work_dir(cfg.work_dir)
    return cfg


def check_work_dir(work_dir: str) -> None:
    """Refuse a work dir that is a file, or that cannot be made (a file on its path, a
    folder without write permission), before anything is built; nothing is created here."""
    path = osp.abspath(work_dir)
    if osp.exists(path) and not osp.isdir(path):
        raise SystemExit(f'--work-dir {work_dir} is a file, not a folder: give a folder (it is '
                         'made if missing) for the logs and checkpoints.')
    existing = path
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f'--work-dir {work_dir} cannot be made or written: {existing} is '
                         + ('a file' if not osp.isdir(existing) else 'not writable')
                         + '. Give a folder you can write to.')


# Loss scaling by precision. fp16 needs dynamic loss scaling: its 5 exponent bits underflow
# small gradients. bf16 has float32's exponent range, so the scaler is left off (PyTorch's
# advice): no scaled backward passes, no pass over the gradients looking for infs before each
# optimizer step (with a for-each optimizer also a host sync), and no periodically skipped
# step where an ever-growing scale overflows.
AMP_LOSS_SCALE = dict(fp16='dynamic', bf16=dict(enabled=False))


def use_amp(optim_wrapper: dict, precision: str) -> dict:
    """Turn ``optim_wrapper`` (a config dict, changed in place and returned) into mmengine's
    ``AmpOptimWrapper`` for ``precision`` ``'fp16'`` or ``'bf16'``: autocast dtype and the
    loss scaling of :data:`AMP_LOSS_SCALE`, unless the config sets ``loss_scale`` itself."""
    if precision not in AMP_LOSS_SCALE:
        raise ValueError(f'--amp {precision!r}: expected one of {sorted(AMP_LOSS_SCALE)}')
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise ValueError(f'--amp {precision} makes the optim wrapper an AmpOptimWrapper, but the '
                         f'config sets optim_wrapper.type={wrapper_type}: drop --amp, or set '
                         'the mixed precision in that wrapper\'s own config.')
    optim_wrapper['type'] = 'AmpOptimWrapper'
    optim_wrapper['dtype'] = 'float16' if precision == 'fp16' else 'bfloat16'
    optim_wrapper.setdefault('loss_scale', AMP_LOSS_SCALE[precision])
    return optim_wrapper

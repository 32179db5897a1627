"""What ``tools/train.py`` and ``tools/test.py`` share: the runner arguments of the command
line, and the config they load (checked ``--cfg-options`` merged, launcher, work dir)."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

from .config_checks import check_cfg_options


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


def load_tool_config(args: argparse.Namespace) -> Config:
    """The config of ``args.config`` with the checked ``--cfg-options``, the launcher and the
    work dir applied; also exports ``LOCAL_RANK`` as the launchers expect."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    check_cfg_options(cfg, args.cfg_options)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg

#!/usr/bin/env python
"""Train with mmengine's runner: HAT pretraining, or any OpenMMLab config (the config's
``default_scope`` -- mmpretrain, mmdet, mmseg -- decides the registries).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [fp16|bf16]]
                                 [--cfg-options k=v ...] [--launcher pytorch|slurm|mpi]
    bash tools/dist_train.sh CONFIG GPUS [same options]
"""
import argparse

import torch
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv=None):
    from hat_mm.utils.tool_args import add_runner_args
    parser = argparse.ArgumentParser(description='Train a model (HAT, mmpretrain/mmdet/mmseg)')
    parser.add_argument('config', help='config file')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or without a value from the latest '
                        'checkpoint in the work dir')
    parser.add_argument('--amp', nargs='?', const='fp16', choices=['fp16', 'bf16'],
                        help='mixed precision through mmengine AmpOptimWrapper '
                        '(fp16 with dynamic loss scaling, or bf16 without loss scaling)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the LR linearly with the total batch size '
                        '(cfg.auto_scale_lr.base_batch_size)')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    return add_runner_args(parser).parse_args(argv)


def merge_args(cfg, args):
    """Apply the training options of the command line to the config."""
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a GPU: mmengine AmpOptimWrapper runs on CUDA '
                             'devices only. Drop --amp to train in fp32 on this machine.')
        from hat_mm.utils.tool_args import use_amp
        use_amp(cfg.optim_wrapper, args.amp)
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        # the work dir's latest checkpoint; without one, the config's load_from (a fine-tuning
        # run requeued before its first save starts from those weights, not random ones; kept
        # for the runner by main(), outside the config it dumps)
        args.auto_resume_load_from = cfg.get('load_from')
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    import hat_mm  # noqa: F401  registers HAT parts; allow-lists mmengine checkpoint classes
    from hat_mm.datasets import check_annotation_files, enable_skip_unreadable_images
    from hat_mm.engine import HATRunner, prepare_resume, report_interruption
    from hat_mm.utils import (check_checkpoint_file, check_dataset_paths, check_evaluator_files,
                              check_pretrained_paths, end_process_group, init_cpu_process_group,
                              set_collective_timeout, watch_ranks)
    from hat_mm.utils.tool_args import load_tool_config, warnings_of_first_rank

    cfg = merge_args(load_tool_config(args), args)
    with warnings_of_first_rank(args.launcher):
        timeout = set_collective_timeout(cfg)
    validate = all(cfg.get(k) is not None for k in ('val_cfg', 'val_dataloader',
                                                    'val_evaluator'))  # mmengine's rule
    loaders = ['train_dataloader'] + (['val_dataloader'] if validate else [])
    check_dataset_paths(cfg, loaders)
    check_annotation_files(cfg, loaders)  # every malformed line and bad label, named
    enable_skip_unreadable_images(cfg)  # opt-in: skip_unreadable_images=<max batch fraction>
    check_evaluator_files(cfg, ['val_evaluator'] if validate else [])
    if not cfg.get('resume'):
        check_pretrained_paths(cfg)
    if cfg.get('load_from'):
        check_checkpoint_file(cfg.load_from, 'resume checkpoint' if cfg.get('resume')
                              else 'load_from checkpoint')
    init_cpu_process_group(cfg, args.launcher)  # gloo when there is no GPU

    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.auto_resume_load_from = getattr(args, 'auto_resume_load_from', None)
    if not isinstance(runner, HATRunner):  # HATRunner checks it itself
        prepare_resume(runner, training=True)  # the checkpoint found (or none), checked
    # a lost rank is named when a collective fails; Ctrl-C or SIGTERM (preemption) says
    # where the run stopped and how to resume it
    with watch_ranks(timeout), report_interruption(runner):
        runner.train()
    end_process_group()  # every rank done: a clean teardown, not the interpreter's


if __name__ == '__main__':
    main()

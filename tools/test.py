#!/usr/bin/env python
"""Evaluate a checkpoint with mmengine's runner (classification: top-1/top-5; detection and
segmentation configs use their own metrics -- the config's ``default_scope`` decides).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--amp] [--tta] [--compile]
                                          [--out metrics.json] [--cfg-options k=v ...]
                                          [--launcher pytorch]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

Every weight of the model must be in the checkpoint with the right shape; a mismatch is
reported by name and nothing is evaluated.

The model is evaluated eager even where its config compiles it for training (the Swin and
ViT paper configs on GPUs): an ImageNet evaluation (a forward of 50,000 images) takes seconds
on a GPU, less than compiling would. ``--compile`` keeps the config's ``torch.compile``, for
long evaluations (ImageNet-C).
"""
import argparse
import json
import numbers
import os
import os.path as osp

import torch
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv=None):
    from hat_mm.utils.tool_args import add_runner_args
    parser = argparse.ArgumentParser(description='Test (evaluate) a checkpoint')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--amp', action='store_true', help='evaluate under autocast')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's tta_pipeline and tta_model "
                        '(multi-scale + flip for segmentation: mIoU(MS))')
    parser.add_argument('--compile', action='store_true',
                        help="keep the config's torch.compile (model.compile, compile); by "
                        'default the evaluation runs eager: one ImageNet evaluation takes '
                        'less time than the compile')
    return add_runner_args(parser).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.out:  # checked and its folder made now, not after the evaluation
        if osp.isdir(args.out) or args.out.endswith(('/', os.sep)):
            raise SystemExit(f'--out {args.out} is a folder; give the path of a JSON file, '
                             f'e.g. --out {osp.join(args.out, "metrics.json")}')
        try:
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        except OSError as err:
            raise SystemExit(f'--out {args.out}: its folder cannot be made ({err}); give '
                             'another path') from err
        existed = osp.exists(args.out)
        try:  # writable? ('a' leaves a file that is there as it is)
            with open(args.out, 'a'):
                pass
        except OSError as err:
            raise SystemExit(f'--out {args.out} cannot be written ({err}); give another '
                             'path') from err
        if not existed:
            os.remove(args.out)
    import hat_mm  # noqa: F401
    from hat_mm.datasets import check_annotation_files
    from hat_mm.utils import (check_checkpoint_file, check_dataset_paths, check_evaluator_files,
                              end_process_group, init_cpu_process_group, load_weights_strict,
                              set_collective_timeout, watch_ranks)
    from hat_mm.utils.tool_args import (launcher_rank, load_tool_config,
                                        warnings_of_first_rank)

    cfg = load_tool_config(args)
    with warnings_of_first_rank(args.launcher):
        timeout = set_collective_timeout(cfg)
    compile_off = not args.compile and not all(
        c in (None, False) for c in (cfg.get('compile'), cfg.model.get('compile')))
    if compile_off:
        cfg.compile = None
        if 'compile' in cfg.model:
            cfg.model.compile = None
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
        if not torch.cuda.is_available() and launcher_rank(args.launcher) == 0:
            # mmengine's autocast: bf16 on CPU, fp16 on CUDA; said once per job
            print('[test] --amp without a GPU: the evaluation runs under CPU autocast in '
                  'bfloat16 (fp16 on CUDA); the metrics can differ slightly from fp32.')
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise SystemExit(f'--tta needs `tta_model` and `tta_pipeline` in {args.config}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    check_dataset_paths(cfg, ['test_dataloader'])
    check_annotation_files(cfg, ['test_dataloader'])
    check_evaluator_files(cfg, ['test_evaluator'])
    check_checkpoint_file(args.checkpoint)
    cfg.load_from, cfg.resume = None, False  # loaded below, strictly
    init_cpu_process_group(cfg, args.launcher)  # gloo when there is no GPU

    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if compile_off:
        runner.logger.info('tools/test.py evaluates eager: the config\'s torch.compile is off '
                           '(--compile keeps it, for long evaluations)')
    model = runner.model
    while hasattr(model, 'module'):  # DDP and/or the TTA wrapper
        model = model.module
    load_weights_strict(model, args.checkpoint)
    runner.logger.info(f'Loaded every weight of the model from {args.checkpoint}')
    with watch_ranks(timeout):
        metrics = runner.test()
    end_process_group()  # every rank done: a clean teardown, not the interpreter's

    if runner.rank == 0:
        # numbers.Real: numpy scalars too (mmseg's mIoU is a float32 under numpy 2)
        shown = '  '.join(f'{k}: {float(v):.2f}' if isinstance(v, numbers.Real) else
                          f'{k}: {v}' for k, v in metrics.items())
        print(f'Test results of {args.checkpoint}: {shown}', flush=True)
        if args.out:
            with open(args.out, 'w') as f:
                json.dump(metrics_for_json(metrics), f, indent=2)
    return metrics


def metrics_for_json(metrics):
    """Numbers as floats (numpy scalars included: mmseg's mIoU is a float32 under numpy 2),
    anything else as its text."""
    return {k: (float(v) if isinstance(v, numbers.Real) else str(v)) for k, v in metrics.items()}


if __name__ == '__main__':
    main()

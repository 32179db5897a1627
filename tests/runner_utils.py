"""Running tools/train.py and tools/test.py on the demo data in subprocesses."""
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'hat_vit_digits.py')


def small_run_options(data_root, train_images=96, val_images=64, epochs=1):
    """--cfg-options that shrink the demo to a few iterations."""
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'train_dataloader.dataset.indices={train_images}',
        f'val_dataloader.dataset.indices={val_images}',
        f'test_dataloader.dataset.indices={val_images}',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False',
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        'default_hooks.logger.interval=1',
    ]


def run_tool(args, timeout=600, env=None):
    """Run a command from the repo root; returns CompletedProcess with merged output."""
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH',
                                                                              ''),
                    OMP_NUM_THREADS='1')
    full_env.update(env or {})
    return subprocess.run(args, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def train(config, work_dir, options, extra=(), timeout=600):
    return run_tool([sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir),
                     *extra, '--cfg-options', *options], timeout=timeout)


def demo_train_cfg(digits_root, work_dir, name, max_epochs=4, adv_epochs=2, workers=0,
                   custom_hooks=(), resume=False, validate=True):
    """The demo config for HATRunner, cut to 3 iterations an epoch (48 images, batches of
    16) with all its random parts on (RandomResizedCrop, mixup, drop-path, shuffling), an EMA
    model, a checkpoint every epoch and (``validate``) validation on 16 images every epoch."""
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = name
    cfg.hat.adv_epochs = adv_epochs
    cfg.model.backbone.drop_path_rate = 0.1
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = digits_root
        cfg[key].num_workers = workers
        cfg[key].persistent_workers = workers > 0
    cfg.train_dataloader.dataset.indices = 48
    cfg.train_dataloader.batch_size = 16
    cfg.val_dataloader.dataset.indices = 16
    if not validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.param_scheduler[0].end = cfg.param_scheduler[1].begin = 1  # warm-up: one epoch
    cfg.param_scheduler[1].end = max_epochs
    cfg.param_scheduler = cfg.param_scheduler[:1 if max_epochs == 1 else 2]
    cfg.custom_hooks = [dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
                        *custom_hooks]
    cfg.resume = resume
    return cfg

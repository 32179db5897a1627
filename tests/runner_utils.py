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

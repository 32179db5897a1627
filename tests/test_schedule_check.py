"""A run shortened with --cfg-options train_cfg.max_epochs=N keeps the file's LR schedule
and hat.adv_epochs (mmengine substitutes ``max_epochs`` when it reads the file): the log says
so, naming the keys to set."""
from mmengine.config import Config

from hat_mm.engine.hat_runner import schedule_outlasting_run

from .runner_utils import DEMO_CONFIG, ROOT, small_run_options, train


def test_schedule_keys_beyond_max_epochs_are_named():
    cfg = Config.fromfile(f'{ROOT}/configs/hat_vit_t.py')
    assert schedule_outlasting_run(cfg, 310) == []  # 300 cosine + 10 cool-down epochs
    assert schedule_outlasting_run(cfg, 100) == ['param_scheduler.0.cosine_epochs=300']
    demo = Config.fromfile(DEMO_CONFIG)
    assert schedule_outlasting_run(demo, 30) == []
    assert schedule_outlasting_run(demo, 2) == ['param_scheduler.0.end=3',
                                                'param_scheduler.1.end=30']


def test_shortened_run_warns_about_the_schedule_and_the_adversarial_phase(digits_root, tmp_path):
    res = train(DEMO_CONFIG, tmp_path, small_run_options(digits_root, train_images=32)
                + ['hat.adv_iters=1'])
    assert res.returncode == 0, res.stdout[-3000:]
    assert ('the LR schedule outlasts this run of train_cfg.max_epochs=1: '
            'param_scheduler.0.end=3, param_scheduler.1.end=30. The config file\'s values '
            'stay when --cfg-options changes train_cfg.max_epochs; set these too for a '
            'shorter run.') in res.stdout
    assert ('HAT: adversarial phase (K=1: one pass per batch, on the unperturbed input '
            '(delta_0 = 0); no perturbed pass, eps=0.00784314, step=0.00392157) until epoch 20: '
            'every epoch of this run (train_cfg.max_epochs=1) is adversarial') in res.stdout

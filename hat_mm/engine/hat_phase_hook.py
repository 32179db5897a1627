"""The switch at ``adv_epochs``: adversarial HAT steps before it, K = 1 after it."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop


@HOOKS.register_module()
class HATPhaseHook(Hook):
    """Sets the HAT phase of the model from the training progress.

    The phase is adversarial while ``epoch < model.hat.adv_epochs`` (for iteration-based
    loops: while ``iter < adv_epochs * len(train_dataloader)``), and K = 1 afterwards. It is
    recomputed before every training iteration from the runner's progress, which a resumed run
    restores, and is also stored in the checkpoint's ``meta['hat']`` for inspection.
    """

    priority = 'NORMAL'

    def __init__(self):
        self._adversarial = None

    @staticmethod
    def _hat_model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'set_hat_phase'):
            raise TypeError(
                f'HATPhaseHook needs a HAT model, but model is {type(model).__name__}. Set '
                "model.type='HATImageClassifier' (or another HAT* classifier) or remove "
                'HATPhaseHook from custom_hooks.')
        return model

    def _is_adversarial(self, runner, model) -> bool:
        adv_epochs = model.hat.adv_epochs
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            return runner.epoch < adv_epochs
        return runner.iter < adv_epochs * len(runner.train_dataloader)

    def _update(self, runner):
        model = self._hat_model(runner)
        adversarial = self._is_adversarial(runner, model)
        if adversarial != self._adversarial:
            if adversarial:
                max_epochs = getattr(runner.train_loop, 'max_epochs', None)
                whole = (f': every epoch of this run (train_cfg.max_epochs={max_epochs}) is '
                         'adversarial' if isinstance(runner.train_loop, EpochBasedTrainLoop)
                         and model.hat.adv_epochs >= max_epochs else '')
                once = (': one pass per batch, on the unperturbed input (delta_0 = 0); no '
                        'perturbed pass' if model.hat.adv_iters == 1 else '')
                runner.logger.info(
                    f'HAT: adversarial phase (K={model.hat.adv_iters}{once}, '
                    f'eps={model.hat.adv_eps:.6g}, step={model.hat.adv_lr:.6g}) until epoch '
                    f'{model.hat.adv_epochs}{whole}')
            else:
                tail = 'clean forward + KL kept' if model.hat.kl_after_adv else 'plain loss'
                # terms no longer produced would otherwise be shown, stale, by the logger
                stale = ['loss_ce_adv', 'loss_kl_adv'] + (
                    [] if model.hat.kl_after_adv else ['loss_kl_clean'])
                for name in stale:
                    runner.message_hub.log_scalars.pop(f'train/{name}', None)
                runner.logger.info(f'HAT: adversarial phase over at epoch {runner.epoch} '
                                   f'(adv_epochs={model.hat.adv_epochs}): K=1, {tail}')
            self._adversarial = adversarial
        model.set_hat_phase(adversarial)

    def before_train(self, runner) -> None:
        self._update(runner)

    def before_train_epoch(self, runner) -> None:
        self._update(runner)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._update(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = self._hat_model(runner)
        checkpoint.setdefault('meta', {})['hat'] = dict(
            model.hat.to_dict(), adversarial=bool(model.hat_adversarial))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('meta', {}).get('hat')
        if saved is not None:
            self._hat_model(runner).set_hat_phase(saved['adversarial'])

"""The learning-rate schedule of the official HAT scripts: timm's ``CosineLRScheduler``.

``train.py`` and ``train_kd.py`` build it with timm's ``create_scheduler`` (``--sched cosine``,
``--epochs``, ``--warmup-epochs``, ``--warmup-lr``, ``--min-lr``, ``--cooldown-epochs``) and
step it once per epoch, ``lr_scheduler.step(epoch + 1)``, so the LR of epoch ``e`` is

- ``warmup_lr + e * (lr - warmup_lr) / warmup_epochs`` while ``e < warmup_epochs``;
- ``min_lr + (lr - min_lr) * (1 + cos(pi * e / cosine_epochs)) / 2`` up to ``cosine_epochs``
  (the cosine runs from epoch 0: the warm-up replaces its start);
- ``min_lr`` after it, in the cool-down epochs (310 = 300 + 10 in the paper's runs).

``lr`` is the optimizer's (after mmengine's ``auto_scale_lr``, which scales it linearly with
the total batch as the official code does); ``warmup_lr`` and ``min_lr`` are absolute, as in
timm. mmengine's ``LinearLR`` + ``CosineAnnealingLR`` differ in three ways: the LR changes
every iteration, the cosine restarts at the end of the warm-up, and ``LinearLR``'s start is a
factor of the scaled LR, so the first warm-up LR would change with the number of GPUs.
"""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


def timm_cosine_lr(epoch: int, lr: float, cosine_epochs: int, warmup_epochs: int,
                   warmup_lr: float, min_lr: float) -> float:
    """The LR of ``epoch`` (module docstring)."""
    if epoch < warmup_epochs:
        return warmup_lr + epoch * (lr - warmup_lr) / warmup_epochs
    if epoch < cosine_epochs:
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * epoch / cosine_epochs))
    return min_lr


@PARAM_SCHEDULERS.register_module()
class TimmCosineLR(LRSchedulerMixin, _ParamScheduler):
    """timm's cosine schedule with warm-up and cool-down, one LR per epoch (module docstring).

    Args:
        optimizer: the optimizer (wrapper).
        cosine_epochs (int): timm's ``t_initial`` (``--epochs``, 300); later epochs are the
            cool-down at ``min_lr``.
        warmup_epochs (int): ``--warmup-epochs`` (timm's default 20).
        warmup_lr (float): LR of epoch 0 (``--warmup-lr``, 1e-6).
        min_lr (float): the end of the cosine and the cool-down LR (``--min-lr``, 1e-5).
        begin, end, last_step, verbose: as mmengine's schedulers. Epoch-based only.
    """

    def __init__(self, optimizer, cosine_epochs: int = 300, warmup_epochs: int = 20,
                 warmup_lr: float = 1e-6, min_lr: float = 1e-5, begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False):
        if not by_epoch:
            raise ValueError('TimmCosineLR sets one LR per epoch, as timm does with the '
                             'official scripts: leave by_epoch=True (and no '
                             'convert_to_iter_based)')
        if not 0 <= warmup_epochs <= cosine_epochs or cosine_epochs < 1:
            raise ValueError(f'TimmCosineLR: need 0 <= warmup_epochs ({warmup_epochs}) <= '
                             f'cosine_epochs ({cosine_epochs}) and cosine_epochs >= 1')
        self.cosine_epochs, self.warmup_epochs = int(cosine_epochs), int(warmup_epochs)
        self.warmup_lr, self.min_lr = float(warmup_lr), float(min_lr)
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step,
                         by_epoch=True, verbose=verbose)

    def load_state_dict(self, state_dict: dict):
        """The saved state, but this run's ``begin`` and ``end``. The runner fills a missing
        ``end`` with ``train_cfg.max_epochs``: a run resumed with a larger ``max_epochs`` (one
        first started shorter, or trained on after its end) would otherwise keep the first
        run's ``end``, and its LR would stay at the value of that run's last epoch. The step
        after that epoch fell at the old ``end`` and set no LR; it is made here (the
        optimizer's state is loaded before the schedulers'), so the resumed epoch trains at
        its own LR, as in a run of that length from the start."""
        begin, end = self.begin, self.end
        super().load_state_dict(state_dict)
        self.begin, self.end = begin, end
        due = self._global_step - self.begin  # the step of the epoch about to train
        if self.begin <= self._global_step < self.end and self.last_step < due:
            self.last_step = due
            for group, value in zip(self.optimizer.param_groups, self._get_value()):
                group[self.param_name] = value
            self._last_value = [g[self.param_name] for g in self.optimizer.param_groups]

    def _get_value(self):
        return [timm_cosine_lr(self.last_step, base, self.cosine_epochs, self.warmup_epochs,
                               self.warmup_lr, self.min_lr) for base in self.base_values]

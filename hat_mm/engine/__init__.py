from .hat_phase_hook import HATPhaseHook
from .hat_runner import HATRunner, apply_hat
from .pretrained_keys_hook import CheckPretrainedKeysHook, compare_with_checkpoint

__all__ = ['HATPhaseHook', 'HATRunner', 'apply_hat', 'CheckPretrainedKeysHook',
           'compare_with_checkpoint']

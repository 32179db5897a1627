from .hat_phase_hook import HATPhaseHook
from .hat_runner import HATRunner, apply_hat

__all__ = ['HATPhaseHook', 'HATRunner', 'apply_hat']

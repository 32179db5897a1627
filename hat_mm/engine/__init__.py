from .checkpoint_hook import AtomicLocalBackend, SafeCheckpointHook
from .hat_phase_hook import HATPhaseHook
from .hat_runner import HATRunner, apply_hat
from .interruption import report_interruption
from .merged_param_groups import MergedGroupsOptimWrapperConstructor, merge_param_groups
from .non_finite_hook import NonFiniteCheckHook, TrainingDivergedError
from .pretrained_keys_hook import CheckPretrainedKeysHook, compare_with_checkpoint
from .resume import prepare_resume
from .rng_state_hook import RNGStateHook
from .timm_cosine_lr import TimmCosineLR, timm_cosine_lr

__all__ = ['HATPhaseHook', 'HATRunner', 'apply_hat', 'CheckPretrainedKeysHook',
           'compare_with_checkpoint', 'AtomicLocalBackend', 'SafeCheckpointHook',
           'NonFiniteCheckHook', 'TrainingDivergedError', 'prepare_resume', 'RNGStateHook',
           'TimmCosineLR', 'timm_cosine_lr', 'MergedGroupsOptimWrapperConstructor',
           'merge_param_groups', 'report_interruption']

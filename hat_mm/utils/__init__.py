from .checkpoint import (CheckpointError, allow_mmengine_checkpoint_classes,
                         check_checkpoint_file, compare_state_dicts, describe_mismatch,
                         format_names, load_checkpoint_file, load_weights_strict,
                         save_checkpoint_atomically, state_dict_of, write_atomically)
from .config_checks import (check_cfg_options, check_dataset_paths, check_evaluator_files,
                            check_pretrained_paths)
from .dist_env import (DEFAULT_COLLECTIVE_TIMEOUT_S, end_process_group, init_cpu_process_group,
                       set_collective_timeout)
from .rank_watch import LostRankError, watch_ranks
from .transformers_guard import skip_broken_mmpretrain_multimodal

__all__ = ['CheckpointError', 'allow_mmengine_checkpoint_classes', 'check_checkpoint_file',
           'compare_state_dicts', 'describe_mismatch', 'format_names', 'load_checkpoint_file',
           'load_weights_strict', 'save_checkpoint_atomically', 'state_dict_of',
           'write_atomically', 'check_dataset_paths', 'check_pretrained_paths',
           'check_evaluator_files', 'check_cfg_options', 'DEFAULT_COLLECTIVE_TIMEOUT_S',
           'init_cpu_process_group', 'set_collective_timeout', 'LostRankError', 'watch_ranks',
           'end_process_group', 'skip_broken_mmpretrain_multimodal']

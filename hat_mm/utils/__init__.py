from .checkpoint import (CheckpointError, allow_mmengine_checkpoint_classes,
                         check_checkpoint_file, load_weights_strict)
from .config_checks import (check_dataset_paths, check_evaluator_files,
                            check_pretrained_paths)

__all__ = ['CheckpointError', 'allow_mmengine_checkpoint_classes', 'check_checkpoint_file',
           'load_weights_strict', 'check_dataset_paths', 'check_pretrained_paths',
           'check_evaluator_files']

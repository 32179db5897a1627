"""Keep an installed ``transformers`` that mmpretrain 1.2.0 cannot use from breaking its import.

mmpretrain 1.2.0 imports its multimodal models (BLIP, BLIP-2, LLaVA, ...) from
``mmpretrain.models`` whenever ``transformers >= 4.28`` is installed. Their modules import
``PreTrainedModel``, ``apply_chunking_to_forward``, ``find_pruneable_heads_and_indices`` and
``prune_linear_layer`` from ``transformers.modeling_utils``; transformers 5 no longer has the last
three there. mmpretrain catches that ``ImportError``, sets the base class to ``None``, and then
``import mmpretrain.models`` fails with ``TypeError: NoneType takes no arguments``.

GPU machines often have such a transformers already (vendor PyTorch containers, a cluster's
Python module; set-up's ``HAT_MM_SYSTEM_TORCH=1`` venv sees them). hat-mm uses none of those
models, so when the names are missing, :func:`skip_broken_mmpretrain_multimodal` tells mmpretrain
that its multimodal dependencies are absent: mmpretrain then registers its own placeholders for
those models (building one says which package it needs), and everything else imports as usual.
It must run before anything imports ``mmpretrain.models``; ``import hat_mm`` runs it first.
"""
import warnings

_NAMES = ('PreTrainedModel', 'apply_chunking_to_forward', 'find_pruneable_heads_and_indices',
          'prune_linear_layer')


def skip_broken_mmpretrain_multimodal() -> bool:
    """Turn mmpretrain's multimodal models off if its transformers import would fail.

    Returns True when it turned them off. Nothing changes when mmpretrain would not import
    them anyway (no transformers >= 4.28, or no pycocotools), when they import, or when
    ``mmpretrain.models`` was already imported.
    """
    import sys

    from mmpretrain.utils import dependency
    if not dependency.WITH_MULTIMODAL or 'mmpretrain.models' in sys.modules:
        return False
    try:
        # what mmpretrain's BLIP language model imports; mmpretrain would import it next anyway
        import transformers.modeling_utils as modeling_utils
        missing = [name for name in _NAMES if not hasattr(modeling_utils, name)]
    except Exception as exc:  # noqa: BLE001  (mmpretrain itself catches everything here)
        missing = [f'transformers.modeling_utils ({type(exc).__name__}: {exc})']
    if not missing:
        return False
    version = dependency.distribution('transformers').version
    dependency.WITH_MULTIMODAL = False
    warnings.warn(
        f'transformers {version} lacks what mmpretrain 1.2.0\'s multimodal models import '
        f'({", ".join(missing)}); hat-mm imports mmpretrain without them (BLIP, LLaVA, ... '
        'become placeholders). To use them, install "transformers>=4.28,<5" in this '
        'environment.', stacklevel=2)
    return True

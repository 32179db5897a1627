"""A transformers that mmpretrain 1.2.0 cannot use must not break ``import hat_mm``.

Found on the first GPU machine: its Python had transformers 5.17, set-up's venv saw it
(``HAT_MM_SYSTEM_TORCH=1``), and ``import mmpretrain.models`` died in BLIP with
``TypeError: NoneType takes no arguments``. The tests put a stand-in transformers (its package
metadata and the modules it has) first on the path of a fresh interpreter.
"""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_transformers(tmp_path, version, modeling_utils=None):
    """A ``transformers`` of ``version``; ``modeling_utils``: that module's source, or none."""
    pkg = tmp_path / 'transformers'
    pkg.mkdir()
    (pkg / '__init__.py').write_text(f'__version__ = {version!r}\n')
    if modeling_utils is not None:
        (pkg / 'modeling_utils.py').write_text(modeling_utils)
    info = tmp_path / f'transformers-{version}.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        f'Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n')
    return tmp_path


def run(code, path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path), ROOT]))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


TRANSFORMERS_5 = '''
class PreTrainedModel:  # transformers 5 keeps this one; the three helpers moved away
    pass
'''


def test_mmpretrain_alone_fails_with_such_a_transformers(tmp_path):
    """The failure is real: without hat_mm's guard, mmpretrain.models cannot be imported
    (with transformers 5.17 itself: ``TypeError: NoneType takes no arguments`` in BLIP; the
    stand-in lacks more, so an earlier import fails)."""
    pytest.importorskip('pycocotools')  # mmpretrain imports BLIP only with it
    path = fake_transformers(tmp_path, '5.17.0', TRANSFORMERS_5)
    proc = run('import mmpretrain.models', path)
    assert proc.returncode != 0
    assert 'transformers' in proc.stderr.strip().splitlines()[-1]


def test_import_hat_mm_turns_the_multimodal_models_off(tmp_path):
    pytest.importorskip('pycocotools')
    path = fake_transformers(tmp_path, '5.17.0', TRANSFORMERS_5)
    proc = run('''
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            import hat_mm
        import mmpretrain.models
        from mmpretrain.registry import MODELS
        from mmpretrain.utils import dependency
        assert dependency.WITH_MULTIMODAL is False
        # hat-mm's own models build; mmpretrain's BLIP is its placeholder saying what it needs
        MODELS.build(dict(type='ImageClassifier', backbone=dict(type='VisionTransformer',
                          arch='deit-tiny', img_size=32, patch_size=16)))
        try:
            MODELS.build(dict(type='BlipCaption'))
        except ImportError as e:
            print('placeholder:', e)
        print('warned:', [str(w.message) for w in caught
                          if 'transformers 5.17.0' in str(w.message)])
    ''', path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'placeholder:' in proc.stdout and 'transformers' in proc.stdout
    warned = proc.stdout.split('warned:')[1]
    assert 'apply_chunking_to_forward' in warned and 'transformers>=4.28,<5' in warned


def test_a_usable_transformers_is_left_alone(tmp_path):
    """With the names mmpretrain imports, nothing changes and nothing is said."""
    pytest.importorskip('pycocotools')
    path = fake_transformers(tmp_path, '4.40.0', TRANSFORMERS_5 + textwrap.dedent('''
        def apply_chunking_to_forward(*a): pass
        def find_pruneable_heads_and_indices(*a): pass
        def prune_linear_layer(*a): pass
    '''))
    proc = run('''
        import importlib.util, warnings
        # the module alone: importing hat_mm would import BLIP from this stand-in
        spec = importlib.util.spec_from_file_location(
            'guard', 'hat_mm/utils/transformers_guard.py')
        guard = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(guard)
        from mmpretrain.utils import dependency
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            assert guard.skip_broken_mmpretrain_multimodal() is False
        assert dependency.WITH_MULTIMODAL is True
        assert not [w for w in caught if 'transformers' in str(w.message)]
        print('left alone')
    ''', path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'left alone' in proc.stdout

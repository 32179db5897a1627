import os
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """The demo data (scikit-learn digits in ImageNet layout), written once per session."""
    from tools.dataset_converters.make_digits_imagenet import make_digits_imagenet
    root = str(tmp_path_factory.mktemp('digits'))
    make_digits_imagenet(root, size=32)
    return root

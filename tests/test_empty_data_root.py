"""A data_root that exists but holds neither the annotation list nor the image folder (an
empty or wrong folder) is reported before anything is built, with the layout and the fix."""
import pytest
from mmengine.config import Config

from hat_mm.datasets import check_annotation_files

from .runner_utils import DEMO_CONFIG


def test_empty_data_root_names_what_is_missing_and_the_fix(tmp_path):
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        check_annotation_files(cfg, ['train_dataloader'])
    msg = str(err.value)
    assert (f"train_dataloader.dataset: {tmp_path} has no annotation list (ann_file) and no "
            f'image folder {tmp_path}/train') in msg
    assert 'ImageNet layout' in msg
    assert '--cfg-options train_dataloader.dataset.data_root=/path/to/data' in msg


def test_image_folder_without_list_is_still_accepted(tmp_path):
    """mmpretrain reads the class folders when there is no list: not an error."""
    cfg = Config.fromfile(DEMO_CONFIG)
    (tmp_path / 'train' / 'digit_0').mkdir(parents=True)
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    check_annotation_files(cfg, ['train_dataloader'])

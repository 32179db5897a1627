"""Each release converter, given the other family's release, names the converter to use."""
import pytest

from hat_mm.utils import CheckpointError
from tools.model_converters import timm_to_mmpretrain, timm_volo_deit_to_mmpretrain

timm = pytest.importorskip('timm')


def test_a_volo_release_in_the_swin_vit_converter_names_the_volo_converter():
    volo = timm.create_model('volo_d1_224', pretrained=False).state_dict()
    with pytest.raises(CheckpointError) as e:
        timm_to_mmpretrain.convert_state_dict(volo, src='hat_volo_d1_224.pth.tar')
    assert 'found no ViT or Swin layout' in str(e.value)
    assert 'tools/model_converters/timm_volo_deit_to_mmpretrain.py' in str(e.value)


def test_a_vit_release_in_the_volo_deit_converter_names_the_swin_vit_converter():
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=False).state_dict()
    with pytest.raises(CheckpointError) as e:
        timm_volo_deit_to_mmpretrain.convert_state_dict(vit, src='hat_vit_tiny.pth.tar')
    assert 'found no VOLO or distilled-DeiT layout (family vit)' in str(e.value)
    assert 'tools/model_converters/timm_to_mmpretrain.py' in str(e.value)

"""Each release converter, given the other family's release, names the converter to use."""
import pytest

from hat_mm.utils import CheckpointError
from tools.model_converters import timm_to_mmpretrain, timm_volo_deit_to_mmpretrain

timm = pytest.importorskip('timm')


@pytest.mark.parametrize('converter, model, found, other', [
    (timm_to_mmpretrain, 'volo_d1_224', 'found no ViT or Swin layout',
     'tools/model_converters/timm_volo_deit_to_mmpretrain.py'),
    (timm_volo_deit_to_mmpretrain, 'vit_tiny_patch16_224',
     'found no VOLO or distilled-DeiT layout (family vit)',
     'tools/model_converters/timm_to_mmpretrain.py'),
])
def test_a_release_of_the_other_family_names_the_other_converter(converter, model, found, other):
    state_dict = timm.create_model(model, pretrained=False).state_dict()
    with pytest.raises(CheckpointError) as e:
        converter.convert_state_dict(state_dict, src=f'hat_{model}.pth.tar')
    assert found in str(e.value) and other in str(e.value)

"""timm's evaluation centre crop, padded when the resized image is smaller than the crop."""
import mmcv
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PaddedCenterCrop(BaseTransform):
    """Center crop that pads (centred, value 0) when the image is smaller than the crop.

    This is torchvision's ``CenterCrop`` as timm's evaluation transform uses it: with a crop
    ratio above 1 (VOLO-D5 at 448/512: ``crop_pct=1.15``) the resized image is smaller than
    the crop and is padded with black borders on all sides. (mmcv's ``CenterCrop`` with
    ``auto_pad`` pads at the bottom/right only.)

    Args:
        crop_size (int | tuple[int, int]): ``(w, h)`` or one int.
    """

    def __init__(self, crop_size):
        if isinstance(crop_size, int):
            crop_size = (crop_size, crop_size)
        self.crop_w, self.crop_h = int(crop_size[0]), int(crop_size[1])

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        if self.crop_w > w or self.crop_h > h:
            left = (self.crop_w - w) // 2 if self.crop_w > w else 0
            top = (self.crop_h - h) // 2 if self.crop_h > h else 0
            right = (self.crop_w - w + 1) // 2 if self.crop_w > w else 0
            bottom = (self.crop_h - h + 1) // 2 if self.crop_h > h else 0
            img = mmcv.impad(img, padding=(left, top, right, bottom), pad_val=0)
            h, w = img.shape[:2]
        top = int(round((h - self.crop_h) / 2.0))
        left = int(round((w - self.crop_w) / 2.0))
        img = img[top:top + self.crop_h, left:left + self.crop_w]
        results['img'] = img
        results['img_shape'] = img.shape
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(crop_size=({self.crop_w}, {self.crop_h}))'

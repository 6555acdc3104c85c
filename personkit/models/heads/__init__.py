"""Task heads; each sizes itself from the channels (and strides) it is given."""

from personkit.models.heads.attributes import AttributeHead
from personkit.models.heads.pose import PoseHead, soft_argmax_2d
from personkit.models.heads.reid import IdHead, ReidHead
from personkit.models.heads.segmentation import SemanticFPNHead

__all__ = ["AttributeHead", "IdHead", "PoseHead", "ReidHead", "SemanticFPNHead", "soft_argmax_2d"]

"""Label vocabularies shared by readers, models, metrics and visualisation, and the person
detector's label and default score (shared by the detectors and the command line).

Joint order and flip pairs follow MPII Human Pose (Andriluka et al., CVPR 2014), which LIP
also uses. Part classes follow LIP (Liang et al., PAMI 2018). Attributes follow the
Market-1501 attribute annotation of Lin et al. (arXiv:1703.07220), in the order of the
paper's Table 2 (Pfeiffer et al., GCPR 2019).
"""

from __future__ import annotations

import numpy as np

#: Ignore label for class targets (attributes, ids); PyTorch's cross-entropy default.
IGNORE_INDEX = -100
#: Ignore label in part-segmentation masks (LIP convention).
SEG_IGNORE = 255

MPII_JOINTS: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
    "l_wrist",
)
NUM_JOINTS = len(MPII_JOINTS)
#: Left/right joint pairs swapped by a horizontal flip.
MPII_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13),
)
#: Bones drawn for a skeleton (pairs of joint indices).
MPII_SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
    (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15),
)
#: PCKh groups of the official MPII toolkit (Head = upper neck and head top).
PCKH_GROUPS: dict[str, tuple[int, ...]] = {
    "Head": (8, 9), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15),
    "Hip": (2, 3), "Knee": (1, 4), "Ankle": (0, 5),
}
#: Joints pooled into the PCKh ``Mean``: all but pelvis (6) and thorax (7).
PCKH_MEAN_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if j not in (6, 7))

LIP_CLASSES: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat",
    "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
    "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)
#: Left/right part classes swapped by a horizontal flip.
LIP_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((14, 15), (16, 17), (18, 19))

#: The paper's merged classes (Sec. 4.1, evaluated as mIoU5).
MERGED5_CLASSES: tuple[str, ...] = ("Background", "Head", "Upper-body", "Lower-body", "Shoes")
#: Lookup table LIP id -> merged id; usable on labels and on predictions (255 stays 255).
LIP_TO_MERGED5 = np.full(256, SEG_IGNORE, dtype=np.uint8)
LIP_TO_MERGED5[:20] = (0, 1, 1, 2, 1, 2, 2, 2, 3, 3, 2, 2, 3, 1, 2, 2, 3, 3, 4, 4)

#: The 12 Market-1501 attributes as multi-class labels: name -> class names.
MARKET_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "age": ("young", "teenager", "adult", "old"),
    "hair": ("short", "long"),
    "up": ("long", "short"),  # sleeve length (L.slv)
    "down": ("long", "short"),  # length of lower-body clothing (L.low)
    "clothes": ("dress", "pants"),  # type of lower-body clothing (S.clth)
    "backpack": ("no", "yes"),
    "handbag": ("no", "yes"),
    "bag": ("no", "yes"),
    "hat": ("no", "yes"),
    "upcolor": ("black", "white", "red", "purple", "yellow", "gray", "blue", "green"),
    "downcolor": ("black", "white", "pink", "purple", "yellow", "gray", "blue", "green", "brown"),
}
#: Names used in the paper's tables.
MARKET_ATTRIBUTE_DISPLAY: dict[str, str] = {
    "gender": "Gender", "age": "Age", "hair": "Hair", "up": "L.slv", "down": "L.low",
    "clothes": "S.clth", "backpack": "B.pack", "handbag": "H.bag", "bag": "Bag", "hat": "Hat",
    "upcolor": "C.up", "downcolor": "C.low",
}

#: ImageNet normalisation (timm defaults).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The label of persons: COCO's in torchvision's 91-entry list, and so in the detector
#: ``personkit train-detector`` trains (0 is background in both).
PERSON_LABEL = 1
#: A person detector's score threshold when none is given (``--detector-score``).
DETECTOR_SCORE = 0.5

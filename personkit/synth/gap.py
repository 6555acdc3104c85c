"""How different the three datasets of a world look, measured without personkit's own models.

Two figures on a sample of each dataset's training images (Market-like crops, MPII-like scenes,
LIP-like images), both from fixed functions of the pixels:

* **Dataset-classifier accuracy**: a linear classifier (scikit-learn's multinomial logistic
  regression on standardised features, 5-fold stratified cross-validation) tells the three sets
  apart from 19 per-image colour and frequency statistics (:func:`image_statistics`). Chance is
  1/3; 1.0 means every image gives its dataset away.
* **Fréchet distance** (as FID) between the sets' feature distributions under a fixed,
  randomly initialised convolutional network (seeded, never trained): the mean over the three
  pairs. Unlike the accuracy it does not saturate at 1.

Images are resized to 64×64 (area interpolation) first, so the figures compare the looks as a
network's input would see them, not the file formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from personkit.data.io import read_image

SIDE = 64
#: Where each dataset's training images lie in a world (native layouts, docs/synth.md).
SOURCES = {"market": "Market-1501-v15.09.15/bounding_box_train", "mpii": "mpii/images",
           "lip": "LIP/TrainVal_images/train_images"}
_BANDS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.71)  # radial frequency bands (cycles per pixel)


@dataclass
class DomainGap:
    """The figures of :func:`domain_gap` for one world."""

    accuracy: float  # 3-way dataset classifier, cross-validated
    pair_accuracy: dict[str, float]  # the same for each pair of sets (chance 0.5)
    frechet: float  # mean pairwise Fréchet distance on random-network features
    pair_frechet: dict[str, float]
    images: dict[str, int]  # images sampled per dataset

    def __str__(self) -> str:
        pairs = ", ".join(f"{k} {v:.3f}" for k, v in self.pair_accuracy.items())
        fds = ", ".join(f"{k} {v:.2f}" for k, v in self.pair_frechet.items())
        return (f"dataset-classifier accuracy {self.accuracy:.3f} (chance 0.333; pairs: {pairs})"
                f"\nFréchet distance (random conv features) {self.frechet:.2f} (pairs: {fds})"
                f"\nimages per dataset: {self.images}")


def _frequency_bands(gray: np.ndarray) -> np.ndarray:
    """Log share of the spectral energy in each radial band (mean removed)."""
    f = np.abs(np.fft.fft2(gray - gray.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(gray.shape[0]), np.fft.fftfreq(gray.shape[1]),
                         indexing="ij")
    r = np.hypot(fx, fy)
    total = f.sum() + 1e-12
    return np.log([f[(r > a) & (r <= b)].sum() / total + 1e-8
                   for a, b in zip(_BANDS[:-1], _BANDS[1:], strict=True)])


def image_statistics(rgb: np.ndarray) -> np.ndarray:
    """19 colour and frequency statistics of one uint8 RGB image (after a 64×64 resize):
    channel means and standard deviations, chromaticity, saturation and lightness moments,
    energy in five radial frequency bands, Laplacian energy and a noise estimate."""
    x = cv2.resize(rgb, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    mean, std = x.reshape(-1, 3).mean(0), x.reshape(-1, 3).std(0)
    chroma = mean / (mean.sum() + 1e-6)
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(gray, cv2.CV_32F)
    noise = np.median(np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 1.0)))
    return np.concatenate([mean, std, chroma[:2], [hsv[..., 1].mean(), hsv[..., 1].std(),
                                                   gray.mean(), gray.std()],
                           _frequency_bands(gray), [np.log(lap.var() + 1e-8),
                                                    np.log(noise + 1e-6)]]).astype(np.float64)


def sample_images(world: Path, n: int, seed: int = 0) -> dict[str, list[Path]]:
    """Up to ``n`` training images per dataset of a world, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, rel in SOURCES.items():
        files = sorted((Path(world) / rel).glob("*.jpg"))
        if not files:
            raise FileNotFoundError(f"no {name} images in {Path(world) / rel}: is {world} a "
                                    f"synthetic world (personkit synth --out ...)?")
        pick = rng.choice(len(files), size=min(n, len(files)), replace=False)
        out[name] = [files[i] for i in sorted(pick)]
    return out


def _random_features(images: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """Global-average-pooled features of a fixed random conv net (seeded, untrained)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    layers, cin = [], 3
    for cout in (32, 64, 96):
        conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen)
                              * np.sqrt(2 / (cin * 9)))  # He initialisation
            conv.bias.zero_()
        layers += [conv, nn.LeakyReLU(0.2)]
        cin = cout
    net = nn.Sequential(*layers).eval()
    x = torch.from_numpy(np.stack([cv2.resize(im, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
                                   for im in images])).permute(0, 3, 1, 2).float() / 255
    x = (x - 0.45) / 0.25
    with torch.no_grad():
        feats = [net(x[i:i + 256]).mean((2, 3)) for i in range(0, len(x), 256)]
    return torch.cat(feats).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows = samples)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    eps = 1e-6 * np.eye(a.shape[1])  # as FID implementations, against singular products
    s1, s2 = np.cov(a, rowvar=False) + eps, np.cov(b, rowvar=False) + eps
    covmean = np.real(linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _cv_accuracy(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """5-fold stratified cross-validated accuracy of a standardised logistic regression."""
    from personkit.extras import require

    require("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(cross_val_score(clf, x, y, cv=folds).mean())


def domain_gap(world: str | Path, n: int = 300, seed: int = 0) -> DomainGap:
    """The dataset-classifier accuracy and Fréchet distance of a synthetic world (module
    docstring), from up to ``n`` training images per dataset."""
    files = sample_images(Path(world), n, seed)
    images = {k: [read_image(p) for p in v] for k, v in files.items()}
    names = list(images)
    stats = {k: np.stack([image_statistics(im) for im in v]) for k, v in images.items()}
    feats = {k: _random_features(v) for k, v in images.items()}
    x = np.concatenate([stats[k] for k in names])
    y = np.concatenate([np.full(len(stats[k]), i) for i, k in enumerate(names)])
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    pair_acc, pair_fd = {}, {}
    for a, b in pairs:
        sel = (y == names.index(a)) | (y == names.index(b))
        pair_acc[f"{a}-{b}"] = _cv_accuracy(x[sel], y[sel], seed)
        pair_fd[f"{a}-{b}"] = frechet_distance(feats[a], feats[b])
    return DomainGap(_cv_accuracy(x, y, seed), pair_acc, float(np.mean(list(pair_fd.values()))),
                     pair_fd, {k: len(v) for k, v in images.items()})

"""How an image becomes the model's input: resized whole, or cut into native-resolution crops.

``resize`` (the default) shrinks or stretches every image to the model's square input. That erases what lives
between neighbouring pixels (a decoder's upsampling, missing demosaicing, sensor noise), the marks generation
leaves. ``crop`` never resamples: training takes one random SxS crop of each image at its own resolution; scoring
takes K fixed crops (:func:`crop_offsets`) and combines their logits (``mean``: the image as a whole; ``max``: "some
region looks generated"). An image smaller than S in a side is mirrored out to S (:func:`mirror_index`), in
training and scoring alike: every pixel keeps its neighbours, nothing is interpolated.

Calibration, the threshold and the domain check work on the combined score; the domain check's features are the
mean of the crops' features (for ``mean``, the head's logit of that mean is exactly the mean of the crops' logits:
the head is linear before its sigmoid).
"""

from __future__ import annotations

from dataclasses import dataclass

INPUT_MODES = ("resize", "crop")
CROP_COUNTS = (1, 5, 9)  # centre; four corners + centre; a 3x3 grid
COMBINE_RULES = ("mean", "max")


@dataclass(frozen=True)
class Framing:
    """The input mode of a model: its square input ``size`` S, and in ``crop`` mode the number of scoring crops
    and how their logits combine."""
    size: int
    mode: str = "resize"
    crops: int = 5
    combine: str = "mean"

    @property
    def cropped(self) -> bool:
        return self.mode == "crop"

    @property
    def views(self) -> int:
        """Forward passes per scored image (K in crop mode, else 1)."""
        return self.crops if self.cropped else 1

    def describe(self) -> str:
        if not self.cropped:
            return f"resized to {self.size} px"
        where = {1: "the centre", 5: "the four corners and the centre", 9: "a 3x3 grid"}[self.crops]
        return (f"{self.crops} native-resolution {self.size} px crop(s) ({where}), {self.combine} of their logits; "
                f"smaller images mirrored out to {self.size} px")

    def to_dict(self) -> dict:
        return {"input": self.mode, "crops": self.crops, "crop_combine": self.combine}


def framing(size: int | Framing, mode: str = "resize", crops: int = 5, combine: str = "mean") -> Framing:
    """A :class:`Framing` from a plain input size (resize mode) or a Framing as it is."""
    return size if isinstance(size, Framing) else Framing(int(size), mode, crops, combine)


def crop_offsets(h, w, size: int, crops: int) -> list[tuple]:
    """(top, left) of each scoring crop of an h x w image (h, w >= size): the centre (1), the four corners then
    the centre (5), or a 3x3 grid row by row (9). Plain arithmetic: works on ints and on TensorFlow scalars."""
    dh, dw = h - size, w - size
    if crops == 1:
        return [(dh // 2, dw // 2)]
    if crops == 5:
        return [(0 * dh, 0 * dw), (0 * dh, dw), (dh, 0 * dw), (dh, dw), (dh // 2, dw // 2)]
    if crops == 9:
        return [(r, c) for r in (0 * dh, dh // 2, dh) for c in (0 * dw, dw // 2, dw)]
    raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")


def crop_boxes(h: int, w: int, fr: Framing) -> tuple[list[dict], list[tuple[int, int, int, int]]]:
    """Where each scoring crop of an h x w image lies in it (top, left, height, width in the image's pixels; a
    crop of an image smaller than S in a side covers the whole side, the rest of the crop being its mirror), and
    where those pixels lie in each crop (row start and end, column start and end): the part of a crop's Grad-CAM
    that belongs to the image."""
    hp, wp = max(h, fr.size), max(w, fr.size)  # the image mirrored out to S, centred (see mirror_index)
    dt, dl = (hp - h) // 2, (wp - w) // 2
    boxes, windows = [], []
    for t, u in crop_offsets(hp, wp, fr.size, fr.crops):
        top, left = max(0, t - dt), max(0, u - dl)
        box = {"top": top, "left": left, "height": min(h, t - dt + fr.size) - top,
               "width": min(w, u - dl + fr.size) - left}
        boxes.append(box)
        r0, c0 = top - (t - dt), left - (u - dl)
        windows.append((r0, r0 + box["height"], c0, c0 + box["width"]))
    return boxes, windows


def mirror_index(n: int, m: int):
    """Indices into a side of length ``n`` that mirror it out to length ``m`` >= n, centred: ``m`` positions, each
    reading a pixel of the original (reflected at the edges, the edge pixel repeated: ``...cba|abc...cba|abc``).
    NumPy; ``data.pipeline.mirror_pad`` does the same in TensorFlow."""
    import numpy as np

    j = (np.arange(m) - (m - n) // 2) % (2 * n)
    return np.where(j >= n, 2 * n - 1 - j, j)

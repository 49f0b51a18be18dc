#!/usr/bin/env python3
"""Copy / convert the sample photos in assets/samples/ from scikit-image's data folder.

Only photos whose scikit-image docstring (skimage/data/_fetchers.py) states CC0
or public domain are used. Each output is kept under ~300 KB with a max side of
640 px and a shorter side >= 256 px.

Usage:
    python tools/make_samples.py [--out assets/samples]
"""

import argparse
import os
import shutil

from PIL import Image

MAX_BYTES = 300 * 1024
MAX_SIDE = 640
MIN_SHORT = 256
JPEG_QUALITY = 85

# (source file in skimage/data, output name, action)
#   "copy": byte-for-byte copy; "jpeg": re-encode as baseline JPEG, quality 85
SAMPLES = [
    ("chelsea.png", "chelsea.png", "copy"),      # cat, CC0 (Stefan van der Walt)
    ("coffee.png", "coffee.jpg", "jpeg"),        # espresso cup, CC0 (Rachel Michetti)
    ("astronaut.png", "astronaut.jpg", "jpeg"),  # Eileen Collins, NASA, public domain
    ("rocket.jpg", "rocket.jpg", "copy"),        # Falcon 9 / DSCOVR, SpaceX, public domain
]


def skimage_data_dir():
    import skimage
    return os.path.join(os.path.dirname(skimage.__file__), "data")


def fit(im):
    w, h = im.size
    scale = min(1.0, MAX_SIDE / max(w, h))
    if scale < 1.0:
        nw, nh = round(w * scale), round(h * scale)
        im = im.resize((nw, nh), Image.LANCZOS)
    assert min(im.size) >= MIN_SHORT, im.size
    return im


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(here, "..", "assets", "samples"))
    args = ap.parse_args()
    out_dir = os.path.normpath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    src_dir = skimage_data_dir()

    for src, dst, action in SAMPLES:
        sp, dp = os.path.join(src_dir, src), os.path.join(out_dir, dst)
        im = Image.open(sp)
        if action == "copy":
            assert max(im.size) <= MAX_SIDE and min(im.size) >= MIN_SHORT, im.size
            shutil.copyfile(sp, dp)
        elif action == "jpeg":
            im = fit(im.convert("RGB"))
            im.save(dp, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
        else:
            raise ValueError(action)
        size = os.path.getsize(dp)
        w, h = Image.open(dp).size
        assert size <= MAX_BYTES, (dst, size)
        print(f"{dst:16s} {w}x{h} {size} bytes  (from skimage/data/{src}, {action})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Verify assets/model/mobilenet_v2.onnx with onnxruntime and write assets/model/reference.json.

For every photo in assets/samples/ (and scikit-image's chelsea.png) this runs
the exact preprocessing the Rust side must reproduce (see PREPROCESSING below
and tools/README.md), prints the top-5 classes and stores the top-5
(class index, logit) plus statistics of the input tensor in reference.json.

Verification-only dependencies: onnxruntime, Pillow, numpy, scikit-image.

Usage:
    python tools/check_model.py [--model ...] [--samples ...] [--labels ...] [--out ...]
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
import onnxruntime as ort
import PIL
from PIL import Image

RESIZE_SHORT = 256
CROP = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CAT_CLASSES = {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"}

PREPROCESSING = {
    "decode": "Pillow Image.open(path).convert('RGB'); 8-bit sRGB values as stored, no ICC "
              "colour management, EXIF orientation NOT applied (none of the samples is rotated)",
    "resize": "shorter side -> 256, longer side -> int(256 * long / short) (truncated, as "
              "torchvision.transforms.Resize(256)); Pillow Image.resize(size, Image.BILINEAR) "
              "with the default reducing_gap=None and no box",
    "resize_filter": "Pillow BILINEAR = separable triangle filter that is ANTIALIASED when "
                     "downscaling: for each output pixel i, scale = in/out, support = max(scale,1), "
                     "centre = (i + 0.5) * scale, taps j in [floor(centre - support + 0.5), "
                     "floor(centre + support + 0.5)) clipped to the image, weight = "
                     "max(0, 1 - |(j + 0.5 - centre) / max(scale,1)|), normalised to sum 1. "
                     "Pillow runs the horizontal pass first, then the vertical pass, with "
                     "fixed-point weights (22 fractional bits) and rounds+clamps to uint8 after "
                     "EACH pass. A plain (non-antialiased) bilinear resizer gives different "
                     "pixels; an f32 implementation of the filter above without the intermediate "
                     "rounding matches within ~1/255 (see float_resize_logit_max_abs_diff).",
    "crop": "centre crop 224x224: left = (W - 224) // 2, top = (H - 224) // 2 (floor; "
            "torchvision rounds half-to-even instead, which differs by 1 px only when W-224 or "
            "H-224 is odd)",
    "normalise": "x = u8 / 255 (float32); x = (x - mean[c]) / std[c] with mean "
                 "[0.485, 0.456, 0.406], std [0.229, 0.224, 0.225], c in R,G,B order",
    "layout": "NCHW float32, shape [1, 3, 224, 224], input name 'input'; output 'logits' [N, 1000] "
              "(raw logits, no softmax)",
}


def resized_size(w, h):
    if w <= h:
        return RESIZE_SHORT, int(RESIZE_SHORT * h / w)
    return int(RESIZE_SHORT * w / h), RESIZE_SHORT


def crop_box(w, h):
    left, top = (w - CROP) // 2, (h - CROP) // 2
    return left, top, left + CROP, top + CROP


def normalise(u8_hwc):
    x = u8_hwc.astype(np.float32) / np.float32(255.0)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def preprocess(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    nw, nh = resized_size(w, h)
    r = im.resize((nw, nh), Image.BILINEAR)
    box = crop_box(nw, nh)
    u8 = np.asarray(r.crop(box), dtype=np.uint8)
    info = {"decoded_size": [w, h], "resized_size": [nw, nh], "crop_box_ltrb": list(box)}
    return normalise(u8), u8, info, np.asarray(im)


# --- independent float implementation of the same antialiased triangle filter,
# used to estimate how far a careful non-Pillow implementation may drift.

def _coeffs(n_in, n_out):
    scale = n_in / n_out
    support = max(scale, 1.0)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        j = np.arange(lo, hi)
        wts = np.clip(1.0 - np.abs((j + 0.5 - centre) / support), 0.0, None)
        m[i, lo:hi] = wts / wts.sum()
    return m


def float_resize(rgb_hwc, nw, nh):
    h, w, _ = rgb_hwc.shape
    x = rgb_hwc.astype(np.float64)
    x = np.einsum("ow,hwc->hoc", _coeffs(w, nw), x)  # horizontal
    x = np.einsum("oh,hwc->owc", _coeffs(h, nh), x)  # vertical
    return x


def top5(logits):
    idx = np.argsort(-logits, kind="stable")[:5]
    return [(int(i), float(logits[i])) for i in idx]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, ".."))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(root, "assets", "model", "mobilenet_v2.onnx"))
    ap.add_argument("--samples", default=os.path.join(root, "assets", "samples"))
    ap.add_argument("--labels", default=os.path.join(root, "assets", "model", "labels.json"))
    ap.add_argument("--out", default=os.path.join(root, "assets", "model", "reference.json"))
    args = ap.parse_args()

    names = None
    if os.path.exists(args.labels):
        with open(args.labels, encoding="utf-8") as fh:
            lab = json.load(fh)
        names = [lab["nodes"][n]["name"] for n in lab["classes"]]

    def nm(i):
        return names[i] if names else str(i)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # deterministic-ish, and the machine has 2 cores
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    out = sess.get_outputs()[0]
    print(f"model input {inp.name} {inp.shape} {inp.type}; output {out.name} {out.shape}")

    # 1. chelsea.png straight from the scikit-image wheel
    import skimage
    chelsea = os.path.join(os.path.dirname(skimage.__file__), "data", "chelsea.png")
    x, _, _, _ = preprocess(chelsea)
    logits = sess.run(["logits"], {"input": x})[0][0]
    t5 = top5(logits)
    print(f"skimage chelsea.png top-5:")
    for i, v in t5:
        print(f"  {i:4d} {nm(i):28s} {v:8.4f}")
    if t5[0][0] not in CAT_CLASSES:
        sys.exit(f"FAIL: top-1 {t5[0]} is not a cat class {CAT_CLASSES}")
    print(f"OK: top-1 is {CAT_CLASSES[t5[0][0]]}")

    # 2. symbolic batch dimension works
    xb = np.concatenate([x, x[:, :, ::-1, :]], axis=0)
    lb = sess.run(["logits"], {"input": np.ascontiguousarray(xb)})[0]
    assert lb.shape == (2, 1000), lb.shape
    assert np.allclose(lb[0], logits, atol=1e-4), "batch of 2 disagrees with batch of 1"
    print("OK: batch of 2 works (batch dim 'N' is symbolic)")

    # 3. reference.json for assets/samples
    files = sorted(f for f in glob.glob(os.path.join(args.samples, "*"))
                   if f.lower().endswith((".png", ".jpg", ".jpeg")))
    if not files:
        sys.exit(f"no samples in {args.samples}")
    samples = []
    for f in files:
        x, u8, info, rgb = preprocess(f)
        logits = sess.run(["logits"], {"input": x})[0][0]
        t5 = top5(logits)
        # float resize variant (drift estimate, not the reference)
        nw, nh = info["resized_size"]
        l, t, r, b = info["crop_box_ltrb"]
        fr = float_resize(rgb, nw, nh)[t:b, l:r]
        xf = ((fr / 255.0).astype(np.float32) - MEAN) / STD
        xf = np.ascontiguousarray(xf.transpose(2, 0, 1)[None], dtype=np.float32)
        lf = sess.run(["logits"], {"input": xf})[0][0]
        pix_diff = float(np.abs(fr - u8.astype(np.float64)).max())
        rec = {
            "file": "assets/samples/" + os.path.basename(f),
            **info,
            "input_mean": float(x.astype(np.float64).mean()),
            "input_mean_per_channel": [float(v) for v in x[0].astype(np.float64).mean(axis=(1, 2))],
            "input_std": float(x.astype(np.float64).std()),
            "crop_u8_mean_per_channel": [float(v) for v in u8.reshape(-1, 3).astype(np.float64).mean(axis=0)],
            "top5": [{"index": i, "logit": round(v, 5), "name": nm(i)} for i, v in t5],
            "float_resize_top5_indices": [i for i, _ in top5(lf)],
            "float_resize_logit_max_abs_diff": round(float(np.abs(lf - logits).max()), 5),
            "float_resize_pixel_max_abs_diff": round(pix_diff, 4),
        }
        samples.append(rec)
        print(f"{os.path.basename(f)}: {info['decoded_size']} -> {info['resized_size']}, "
              f"crop {info['crop_box_ltrb']}, input mean {rec['input_mean']:.6f}")
        for i, v in t5:
            print(f"  {i:4d} {nm(i):28s} {v:8.4f}")
        print(f"  (float-resize variant: top-5 {rec['float_resize_top5_indices']}, "
              f"max |dlogit| {rec['float_resize_logit_max_abs_diff']}, "
              f"max |dpixel| {rec['float_resize_pixel_max_abs_diff']})")

    doc = {
        "model": "assets/model/mobilenet_v2.onnx",
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider, 1 thread",
        "pillow": PIL.__version__,
        "preprocessing": PREPROCESSING,
        "suggested_tolerance": {
            "logit_abs_if_pixels_identical": 0.01,
            "logit_abs_if_resizer_differs": 1.0,
            "note": "with bit-identical 224x224 u8 pixels (Pillow-exact resize) logits agree to "
                    "~1e-4..1e-3 between inference engines; a resizer that differs by <= 1/255 per "
                    "pixel (e.g. f32 triangle filter without Pillow's intermediate u8 rounding, or a "
                    "different JPEG IDCT) moves logits by up to float_resize_logit_max_abs_diff "
                    "(observed <= ~0.6) and can reorder close top-5 entries; then compare top-1 "
                    "and top-5 as sets only",
        },
        "samples": samples,
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

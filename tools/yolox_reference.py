#!/usr/bin/env python3
"""Run assets/model/yolox_nano.onnx with onnxruntime and write assets/model/yolox_reference.json.

The Rust detector (src/detection/yolox.rs) is tested against this file
(tests/yolox.rs). Two kinds of reference:

* "exact": a synthetic input tensor both sides compute with the same integer
  formula (see PATTERN), so tract and onnxruntime see bit-identical input;
  the file stores raw output rows (85 values) at fixed anchor indices and
  the decoded boxes. This checks the engine and the decoding exactly.
* "samples": real photos from assets/samples/, letterboxed like the product
  (PREPROCESSING below); the file stores checksums of the input tensor (so a
  mismatch in preprocessing is reported as such, not as a model error) and
  the decoded boxes after NMS, in original-image fractions.

It also prints onnxruntime's single-thread latency per image.

Dependencies (verification only, never needed by the product): onnxruntime,
numpy, Pillow.

Usage:
    python tools/yolox_reference.py [--model ...] [--samples ...] [--out ...]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import PIL
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from yolox_common import NMS_IOU, SIDE, decode, letterbox, nms  # noqa: E402

SCORE_MIN = 0.10
# Anchor rows stored verbatim for the exact comparison: one per stride level
# and a few across the grid.
EXACT_ROWS = [0, 1, 51, 1000, 2703, 2704, 3000, 3379, 3380, 3548]
SAMPLES = ["astronaut.jpg", "chelsea.png", "coffee.jpg"]

PREPROCESSING = {
    "decode": "Pillow Image.open(path).convert('RGB'); no EXIF rotation (none of the samples "
              "is rotated)",
    "letterbox": "r = min(416 / h, 416 / w); new size (max(1, round(w * r)), max(1, round(h * r))); "
                 "Pillow resize with Image.BILINEAR (antialiased triangle filter, the same "
                 "filter imgtag uses via fast_image_resize); pasted at the top-left of a "
                 "canvas filled with 114, each side the scaled size plus 16, rounded up to the "
                 "next of 128, 192, 256, 320, 352, 416",
    "layout": "NCHW float32 [1, 3, H, W] (the canvas; 416x416 for the exact input), channels "
              "in B, G, R order, values 0-255 (no mean/std), input name 'images'",
    "decode_output": "output [1, A, 85]: per anchor (dx, dy, log w, log h, objectness, 80 "
                     "class scores); objectness and classes already have a sigmoid in the "
                     "graph, the box does not. Anchors: stride 8 (H/8 x W/8), 16, 32 (3549 "
                     "on 416x416), row-major (y, x) within a level; cx = (dx + x) * s, cy = (dy + "
                     "y) * s, w = exp(log w) * s, h = exp(log h) * s, in letterboxed pixels; "
                     "divide by r for original pixels",
    "score": "score = objectness * class score; candidates with score >= 0.10 for any class",
    "nms": "per class, greedy by score, IoU > 0.45 suppressed (continuous coordinates, no +1)",
}

PATTERN = ("exact input: value at flat index i (NCHW) = ((i * 7919 + (i / 416) * 104729) mod "
           "256) as float, integer arithmetic, / = integer division")


def exact_tensor():
    i = np.arange(3 * SIDE * SIDE, dtype=np.int64)
    v = (i * 7919 + (i // SIDE) * 104729) % 256
    return v.astype(np.float32).reshape(1, 3, SIDE, SIDE)


def checksums(t):
    flat = t.reshape(3, -1).astype(np.float64)
    return {"channel_sums": [float(s) for s in flat.sum(axis=1)],
            "channel_sq_sums": [float(s) for s in (flat * flat).sum(axis=1)]}


def run_sample(sess, path, name):
    im = Image.open(path).convert("RGB")
    (w, h) = im.size
    tensor, r, (nw, nh) = letterbox(im)
    raw = sess.run(None, {"images": tensor})[0][0]
    boxes, scores = decode(raw, tensor.shape[2:])
    dets = []
    for c, i, s in nms(boxes, scores, SCORE_MIN):
        x1, y1, x2, y2 = (boxes[i] / r).tolist()
        x1, x2 = np.clip([x1, x2], 0, w)
        y1, y2 = np.clip([y1, y2], 0, h)
        dets.append({"class": c, "anchor": i, "score": round(s, 6),
                     "left": round(float(x1 / w), 6), "top": round(float(y1 / h), 6),
                     "width": round(float((x2 - x1) / w), 6),
                     "height": round(float((y2 - y1) / h), 6)})
    print(f"{name}: {w}x{h} -> {nw}x{nh}, {len(dets)} boxes >= {SCORE_MIN}:",
          [(d["class"], round(d["score"], 3)) for d in dets[:6]])
    return {"file": name, "size": [w, h], "resized": [nw, nh],
            "canvas": [tensor.shape[3], tensor.shape[2]], "ratio": r,
            **checksums(tensor), "detections": dets}


def latency(sess, tensor, runs=30):
    sess.run(None, {"images": tensor})
    t0 = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {"images": tensor})
    return (time.perf_counter() - t0) / runs * 1000


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(root, "assets/model/yolox_nano.onnx"))
    ap.add_argument("--samples", default=os.path.join(root, "assets/samples"))
    ap.add_argument("--out", default=os.path.join(root, "assets/model/yolox_reference.json"))
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])

    x = exact_tensor()
    raw = sess.run(None, {"images": x})[0][0]
    boxes, scores = decode(raw)
    exact = {"pattern": PATTERN, **checksums(x),
             "rows": {str(i): [float(v) for v in raw[i]] for i in EXACT_ROWS},
             "output_sum": float(raw.astype(np.float64).sum()),
             "decoded": {str(i): [float(v) for v in boxes[i]] for i in EXACT_ROWS}}

    samples = [run_sample(sess, os.path.join(args.samples, n), n) for n in SAMPLES]
    ms = latency(sess, x)
    print(f"onnxruntime {ort.__version__}, 1 thread: {ms:.1f} ms per 416x416 inference")

    doc = {"model": "assets/model/yolox_nano.onnx", "runtime": f"onnxruntime {ort.__version__}",
           "pillow": PIL.__version__, "preprocessing": PREPROCESSING,
           "score_min": SCORE_MIN, "nms_iou": NMS_IOU, "onnxruntime_ms_1_thread": round(ms, 2),
           "exact": exact, "samples": samples}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()

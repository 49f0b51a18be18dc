#!/usr/bin/env python3
"""The onnxruntime peer of `imgtag tag --detector local`: a plain Python
script running the same two models (assets/model/mobilenet_v2.onnx and
yolox_nano.onnx) with onnxruntime and Pillow, the same preprocessing, on a
folder of images, with N worker processes; it writes one JSON per image.

It is the yardstick of imgtag's local throughput (`cargo bench --bench
local_detector` runs it beside imgtag on the same folder when a Python with
onnxruntime and Pillow is found). Never needed by the tests or the product.

Per image, as imgtag does it (src/imaging.rs, src/detection/yolox.rs):
  * decode: Pillow, EXIF orientation applied, converted to RGB;
  * classifier: shorter side -> 256 (longer truncated), BILINEAR (Pillow's
    antialiased triangle filter), centre crop 224 (floor), /255, ImageNet
    mean/std, NCHW; softmax; the top class and the probabilities' top 5;
  * detector: letterbox to 416 (scale to fit, BILINEAR, top-left, pad
    114) on imgtag's canvas (the scaled size plus 16, rounded up to 128, 192,
    256, 320, 352 or 416; the full
    416 square, as YOLOX's own demo, with --square), BGR 0-255, NCHW; boxes decoded on strides 8/16/32, score =
    objectness x class >= max(min_confidence, 0.10), per-class NMS at IoU
    0.45; boxes as fractions of the image (Rekognition's BoundingBox);
  * one session per model per worker, one intra-op thread each (as imgtag).

Output: OUT/<relative path>.json with {"top5": [[class, prob], ...],
"boxes": [{"class", "score", "Left", "Top", "Width", "Height"}]}. The
summary line on stdout: "peer: N images in S s: R images/s".

Usage:
    python tools/ort_peer.py IMAGES_DIR OUT_DIR [--workers 2]
        [--models assets/model] [--min-confidence 55] [--square]
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from yolox_common import decode, letterbox, nms  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SCORE_FLOOR = 0.10
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def classifier_input(im):
    w, h = im.size
    if w <= h:
        nw, nh = 256, 256 * h // w
    else:
        nw, nh = 256 * w // h, 256
    r = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - 224) // 2, (nh - 224) // 2
    x = np.asarray(r.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def boxes_of(raw, shape, ratio, size, score_min):
    boxes, scores = decode(raw, shape)
    w, h = size
    out = []
    for c, i, score in nms(boxes, scores, score_min):
        x1, y1, x2, y2 = (float(v) / ratio for v in boxes[i])
        left, top = min(max(x1 / w, 0.0), 1.0), min(max(y1 / h, 0.0), 1.0)
        out.append({"class": c, "score": score,
                    "Left": left, "Top": top,
                    "Width": max(min(max(x2 / w, 0.0), 1.0) - left, 0.0),
                    "Height": max(min(max(y2 / h, 0.0), 1.0) - top, 0.0)})
    out.sort(key=lambda b: (-b["score"], b["class"]))
    return out


_STATE = {}


def _init(models, square):
    _STATE["fit"] = not square
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    _STATE["cls"] = ort.InferenceSession(os.path.join(models, "mobilenet_v2.onnx"), opts,
                                         providers=providers)
    _STATE["det"] = ort.InferenceSession(os.path.join(models, "yolox_nano.onnx"), opts,
                                         providers=providers)


def _work(job):
    src, dst, min_confidence = job
    try:
        with Image.open(src) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
        cls, det = _STATE["cls"], _STATE["det"]
        logits = cls.run(None, {cls.get_inputs()[0].name: classifier_input(im)})[0][0]
        e = np.exp(logits - logits.max())
        probs = e / e.sum()
        top = np.argsort(-probs)[:5]
        tensor, ratio, _ = letterbox(im, _STATE["fit"])
        raw = det.run(None, {det.get_inputs()[0].name: tensor})[0][0]
        boxes = boxes_of(raw, tensor.shape[2:], ratio, im.size,
                         max(min_confidence / 100.0, SCORE_FLOOR))
        doc = {"top5": [[int(i), float(probs[i])] for i in top], "boxes": boxes}
    except Exception as e:  # one bad image is a recorded failure, as in imgtag
        doc = {"error": f"{type(e).__name__}: {e}"}
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(dst, "w") as f:
        json.dump(doc, f)
    return "error" not in doc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images")
    ap.add_argument("out")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--models", default=os.path.join(os.path.dirname(__file__), "..",
                                                      "assets", "model"))
    ap.add_argument("--min-confidence", type=float, default=55.0)
    ap.add_argument("--square", action="store_true",
                    help="run the detector on the full 416x416 square, not imgtag's canvas")
    args = ap.parse_args()
    start = time.perf_counter()
    jobs = []
    for root, _, files in os.walk(args.images):
        for name in sorted(files):
            if name.lower().endswith(EXTENSIONS):
                src = os.path.join(root, name)
                rel = os.path.relpath(src, args.images)
                jobs.append((src, os.path.join(args.out, rel + ".json"), args.min_confidence))
    jobs.sort()
    with mp.get_context("fork").Pool(args.workers, initializer=_init,
                                     initargs=(args.models, args.square)) as pool:
        ok = sum(pool.imap_unordered(_work, jobs, chunksize=1))
    elapsed = time.perf_counter() - start
    print(f"peer: {len(jobs)} images in {elapsed:.2f} s: {len(jobs) / elapsed:.1f} images/s "
          f"({ok} ok, onnxruntime {ort.__version__}, {args.workers} workers)")
    return 0 if ok == len(jobs) else 1


if __name__ == "__main__":
    sys.exit(main())

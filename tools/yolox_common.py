"""YOLOX-nano's input and output as imgtag computes them
(src/imaging.rs `letterbox_bgr`, src/detection/yolox.rs): one copy, used by
tools/ort_peer.py and tools/yolox_reference.py so the two never drift.
Verification only, never needed by the product."""

import numpy as np
from PIL import Image

SIDE = 416
STRIDES = (8, 16, 32)
PAD = 114
NMS_IOU = 0.45


def letterbox(im):
    """An RGB Pillow image scaled to fit SIDE x SIDE (BILINEAR), at the
    top-left of a canvas filled with PAD, as NCHW BGR 0-255 floats; with
    the scale and the scaled size."""
    w, h = im.size
    r = min(SIDE / h, SIDE / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    canvas = np.full((SIDE, SIDE, 3), PAD, dtype=np.uint8)
    canvas[:nh, :nw] = np.asarray(im.resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
    bgr = canvas[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None]), r, (nw, nh)


def _grid():
    rows = []
    for s in STRIDES:
        n = SIDE // s
        ys, xs = np.mgrid[0:n, 0:n]
        rows.append(np.stack([xs.ravel(), ys.ravel(), np.full(n * n, s)], axis=1))
    return np.concatenate(rows).astype(np.float32)


GRID = _grid()


def decode(raw):
    """Output rows [3549, 85] -> boxes (x1, y1, x2, y2 in letterboxed
    pixels) and scores (objectness x class), per anchor."""
    cx = (raw[:, 0] + GRID[:, 0]) * GRID[:, 2]
    cy = (raw[:, 1] + GRID[:, 1]) * GRID[:, 2]
    w = np.exp(raw[:, 2]) * GRID[:, 2]
    h = np.exp(raw[:, 3]) * GRID[:, 2]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes, raw[:, 4:5] * raw[:, 5:]


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes, scores, score_min):
    """Per class, greedy by score, IoU > NMS_IOU suppressed: (class,
    anchor, score), best first."""
    keep = []
    for c in np.nonzero((scores >= score_min).any(axis=0))[0]:
        idx = np.nonzero(scores[:, c] >= score_min)[0]
        idx = idx[np.argsort(-scores[idx, c], kind="stable")]
        kept = []
        for i in idx:
            if all(iou(boxes[i], boxes[k]) <= NMS_IOU for k in kept):
                kept.append(i)
        keep += [(int(c), int(i), float(scores[i, c])) for i in kept]
    keep.sort(key=lambda t: -t[2])
    return keep

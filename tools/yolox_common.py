"""YOLOX-nano's input and output as imgtag computes them
(src/imaging.rs `letterbox_bgr`, src/detection/yolox.rs): one copy, used by
tools/ort_peer.py and tools/yolox_reference.py so the two never drift.
Verification only, never needed by the product."""

import numpy as np
from PIL import Image

SIDE = 416
STRIDES = (8, 16, 32)
PAD = 114
CANVAS_MARGIN = 16
CANVAS_SIDES = (128, 192, 256, 320, 352, SIDE)
NMS_IOU = 0.45


def canvas(nw, nh):
    """imgtag's input size for a scaled image of nw x nh (yolox.rs
    `Canvas`): each side plus CANVAS_MARGIN, rounded up to the next of
    CANVAS_SIDES."""
    def up(v):
        return next((s for s in CANVAS_SIDES if s >= v + CANVAS_MARGIN), SIDE)
    return up(nw), up(nh)


def letterbox(im, fit=True):
    """An RGB Pillow image scaled to fit SIDE x SIDE (BILINEAR), at the
    top-left of a canvas filled with PAD (imgtag's `canvas`, or the full
    square as YOLOX's own demo has it when fit is False), as NCHW BGR 0-255
    floats; with the scale and the scaled size."""
    w, h = im.size
    r = min(SIDE / h, SIDE / w)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    cw, ch = canvas(nw, nh) if fit else (SIDE, SIDE)
    padded = np.full((ch, cw, 3), PAD, dtype=np.uint8)
    padded[:nh, :nw] = np.asarray(im.resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
    bgr = padded[:, :, ::-1].astype(np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None]), r, (nw, nh)


def grid(h, w):
    """(x, y, stride) of every output row on an h x w input."""
    rows = []
    for s in STRIDES:
        ys, xs = np.mgrid[0:h // s, 0:w // s]
        rows.append(np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, s)], axis=1))
    return np.concatenate(rows).astype(np.float32)


def decode(raw, shape=(SIDE, SIDE)):
    """Output rows [anchors, 85] of an input of shape (h, w) -> boxes (x1,
    y1, x2, y2 in letterboxed pixels) and scores (objectness x class), per
    anchor."""
    g = grid(*shape)
    cx = (raw[:, 0] + g[:, 0]) * g[:, 2]
    cy = (raw[:, 1] + g[:, 1]) * g[:, 2]
    w = np.exp(raw[:, 2]) * g[:, 2]
    h = np.exp(raw[:, 3]) * g[:, 2]
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

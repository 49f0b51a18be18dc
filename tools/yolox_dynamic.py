"""Make assets/model/yolox_nano.onnx's input height and width free.

The file as copied (sha256 615e2661...41a57b, see LICENSE-NOTICE.md) fixes
its input at 1x3x416x416 and carries the shapes of every intermediate value.
The network itself is fully convolutional (its head reshapes to [1, 85, -1]),
so imgtag runs it on a canvas only as large as the scaled photo
(docs/detectors.md, "The detector's canvas"). This script names the input's
height and width and the output's anchor count as free dimensions and drops
the recorded intermediate shapes; weights and nodes are unchanged, and the
output at 416x416 is checked to be identical.

    python tools/yolox_dynamic.py original.onnx assets/model/yolox_nano.onnx
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(src, dst):
    model = onnx.load(src)
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
    onnx.checker.check_model(model)
    onnx.save(model, dst)

    x = np.random.RandomState(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    before = ort.InferenceSession(src).run(None, {"images": x})[0]
    after = ort.InferenceSession(dst).run(None, {"images": x})[0]
    assert np.array_equal(before, after), "outputs differ at 416x416"
    small = ort.InferenceSession(dst).run(None, {"images": x[:, :, :320, :]})[0]
    assert small.shape == (1, 52 * 40 + 26 * 20 + 13 * 10, 85), small.shape
    print(f"{dst}: same output at 416x416, runs at 320x416 ({small.shape[1]} anchors)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

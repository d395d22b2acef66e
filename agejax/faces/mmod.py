"""dlib's MMOD CNN face detector, run by ONNX Runtime.

The ``face-recognition-models`` wheel ships the detector's trained network
(``mmod_human_face_detector.dat``). dlib runs it with its own convolutions, without a
BLAS here: about 0.45 s for a 320 px photo on 2 cores (benchmarks/detection_recall.py).
This module reads the same weights out of that file, folds each batch norm into its
convolution, and runs the network as an ONNX graph, one pyramid level at a time.

How dlib uses the network, and so how this does: the photo is shrunk by 5/6 per level
into an image pyramid; the network scores every 8th pixel of each level for an 80 x 80
face window centred there; scores above 0 are faces, and non-maximum suppression keeps
the best of those that overlap. dlib tiles the levels into one image with 10-11 px of
black between them; here each level is padded with that black on its own, so scores
differ slightly near the borders and the boxes agree (tests/test_mmod.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

INPUT = "image"
OUTPUT = "scores"
LEVEL_PADDING = 11  # black around each level: dlib's pyramid_outer_padding
MIN_LEVEL_SIDE = 20  # smaller levels hold no face the 80 px window finds
GRAPH_VERSION = 1  # part of the cached graph's name: raise it when to_onnx changes


@dataclasses.dataclass
class Convolution:
    kernel: np.ndarray  # (out, in, rows, cols), batch norm folded in
    bias: np.ndarray
    stride: int
    padding: int
    relu: bool


@dataclasses.dataclass
class Network:
    mean_rgb: tuple[float, float, float]
    convolutions: list[Convolution]
    window: tuple[int, int]  # the face window's width and height, in a level's pixels
    nms_iou: float  # detections overlapping a better one by more than this are dropped

    def output_to_input(self, row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A level's pixel that the score at (row, col) of the output is centred on (dlib's map_output_to_input)."""
        for conv in reversed(self.convolutions):
            centre = conv.kernel.shape[-1] // 2
            row, col = row * conv.stride - conv.padding + centre, col * conv.stride - conv.padding + centre
        return row, col


class _Reader:
    """dlib's serialization: integers as a length byte (0x80: negative) and little-endian
    bytes, floats as an integer mantissa and exponent, tensors as raw float32."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def integer(self) -> int:
        head = self.data[self.at]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.at + 1:self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if head & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        return math.ldexp(mantissa, self.integer())

    def text(self) -> str:
        size = self.integer()
        self.at += size
        return self.data[self.at - size:self.at].decode("ascii")

    def flag(self) -> bool:
        self.at += 1
        return self.data[self.at - 1:self.at] == b"1"

    def tensor(self) -> np.ndarray:
        self.expect(self.integer(), 2, "tensor version")
        shape = [self.integer() for _ in range(4)]
        count = math.prod(shape)
        values = np.frombuffer(self.data, "<f4", count, self.at)
        self.at += 4 * count
        return values.reshape(shape)

    def alias(self) -> list[int]:
        self.expect(self.integer(), 1, "alias_tensor version")
        return [self.integer() for _ in range(4)]

    @staticmethod
    def expect(found, wanted, what: str) -> None:
        if found != wanted:
            raise ValueError(f"unexpected {what} {found!r} in the MMOD model file (expected {wanted!r})")


def read_network(path: Path) -> Network:
    """The network of dlib's mmod_human_face_detector.dat (dlib's net_type of dnn_mmod_face_detection_ex.cpp)."""
    try:
        return _read_network(_Reader(Path(path).read_bytes()))
    except (IndexError, UnicodeDecodeError, ValueError) as err:  # cut short, or another file
        raise ValueError(f"{path} is not dlib's MMOD face detector: {err}") from None


def _read_network(reader: _Reader) -> Network:
    reader.expect(reader.integer(), 1, "add_loss_layer version")
    reader.expect(reader.text(), "loss_mmod_", "loss layer")
    reader.expect(reader.integer(), 1, "mmod_options version")
    window = (reader.integer(), reader.integer())
    _false_alarm_loss, _missed_loss, _truth_iou = reader.real(), reader.real(), reader.real()
    nms_iou, _nms_covered = reader.real(), reader.real()
    _ignore_iou, _ignore_covered = reader.real(), reader.real()
    # One add_layer version per layer, outermost first; the innermost (3) holds the input layer.
    versions = []
    while not versions or versions[-1] != 3:
        versions.append(reader.integer())
    reader.expect(reader.text(), "input_rgb_image_pyramid", "input layer")
    mean_rgb = (reader.real(), reader.real(), reader.real())

    convolutions: list[Convolution] = []
    for depth in range(len(versions)):  # from the input up, each layer then its add_layer's state
        kind = reader.text()
        if kind == "con_4":
            params = reader.tensor().ravel()
            filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.integer() for _ in range(7))
            shape, _ = reader.alias(), reader.alias()
            [reader.real() for _ in range(4)]  # learning-rate and weight-decay multipliers
            if (rows, stride_y, pad_y) != (cols, stride_x, pad_x):
                raise ValueError("the MMOD model file has a non-square convolution")
            size = math.prod(shape)
            convolutions.append(Convolution(params[:size].reshape(shape), params[size:size + filters].copy(),
                                            stride_y, pad_y, relu=False))
        elif kind == "bn_con2":
            params = reader.tensor().ravel()
            reader.alias(), reader.alias()
            _means, _invstds, running_means, running_variances = (reader.tensor().ravel() for _ in range(4))
            reader.integer(), reader.integer()  # updates, window of the running statistics
            [reader.real() for _ in range(4)]
            eps = reader.real()
            channels = params.size // 2
            scale = params[:channels] / np.sqrt(running_variances + eps)
            shift = params[channels:] - scale * running_means
            conv = convolutions[-1]
            conv.kernel = conv.kernel * scale[:, None, None, None]
            conv.bias = conv.bias * scale + shift
        elif kind == "relu_":
            convolutions[-1].relu = True
        else:
            raise ValueError(f"unexpected layer {kind!r} in the MMOD model file")
        for _ in range(3):  # setup called, gradient stale, gradient disabled
            reader.flag()
        for _ in range(3):  # x_grad, cached_output, params_grad (empty)
            reader.tensor()
        if depth == 0:
            reader.integer()  # the input layer's sample expansion factor
    if reader.at != len(reader.data):
        raise ValueError("the MMOD model file holds more than its network")
    return Network(mean_rgb, convolutions, window, nms_iou)


def to_onnx(network: Network) -> onnx.ModelProto:
    """The network as an ONNX graph: uint8 (1, H, W, 3) RGB "image" -> (1, 1, h, w) "scores"."""
    from onnx import TensorProto, helper

    from agejax.serving.onnx_graph import IR_VERSION, OPSET, Graph

    graph = Graph()
    x = graph.add("Transpose", [graph.add("Cast", [INPUT], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    x = graph.add("Sub", [x, graph.constant(np.reshape(network.mean_rgb, (1, 3, 1, 1)))])
    x = graph.add("Mul", [x, graph.constant(1 / 256)])
    for conv in network.convolutions:
        x = graph.add("Conv", [x, graph.constant(conv.kernel), graph.constant(conv.bias)],
                      strides=[conv.stride] * 2, pads=[conv.padding] * 4)
        if conv.relu:
            x = graph.add("Relu", [x])
    graph.nodes.append(helper.make_node("Identity", [x], [OUTPUT], name=OUTPUT))
    onnx_graph = helper.make_graph(
        graph.nodes, "mmod_face_detector",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, [1, "height", "width", 3])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, 1, "rows", "cols"])],
        initializer=graph.constants,
    )
    return helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def cached_graph(path: Path, network: Network) -> bytes:
    """The network's ONNX graph, kept under CACHE_ROOT/mmod once built: building it imports the onnx
    package, which takes about a second, and every batch worker would pay that on its first CNN find."""
    from agejax import CACHE_ROOT

    digest = hashlib.sha256(Path(path).read_bytes() + f"graph {GRAPH_VERSION}".encode()).hexdigest()[:16]
    cached = CACHE_ROOT / "mmod" / f"{digest}.onnx"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    graph = to_onnx(network).SerializeToString()
    try:  # written whole or not at all: two workers may build it at once
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False) as handle:
            handle.write(graph)
        os.replace(handle.name, cached)
    except OSError:
        pass  # no writable cache: built again next time
    return graph


class MmodDetector:
    """Faces in an RGB uint8 image: [(left, top, right, bottom, score)], best first."""

    def __init__(self, path: Path | None = None):
        import onnxruntime

        if path is None:
            import face_recognition_models

            path = face_recognition_models.cnn_face_detector_model_location()
        self.network = read_network(path)
        options = onnxruntime.SessionOptions()
        # One thread, as dlib's detector: the batch CLI detects in a process per core.
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = onnxruntime.InferenceSession(
                cached_graph(path, self.network), options, providers=["CPUExecutionProvider"])
        except Exception:  # a damaged cached graph: build this one afresh
            self.session = onnxruntime.InferenceSession(
                to_onnx(self.network).SerializeToString(), options, providers=["CPUExecutionProvider"])

    def __call__(self, image: np.ndarray) -> list[tuple[float, float, float, float, float]]:
        height, width = image.shape[:2]
        window_w, window_h = self.network.window
        found = []
        level = image
        while min(level.shape[:2]) >= MIN_LEVEL_SIDE:
            padded = np.pad(level, ((LEVEL_PADDING,) * 2, (LEVEL_PADDING,) * 2, (0, 0)))
            scores = self.session.run(None, {INPUT: padded[None]})[0][0, 0]
            rows, cols = np.nonzero(scores > 0.0)  # dlib's threshold
            if rows.size:
                y, x = self.network.output_to_input(rows, cols)
                to_x, to_y = width / level.shape[1], height / level.shape[0]
                # dlib's centred_rect: the window's top-left pixel, then its last one
                left, top = x - LEVEL_PADDING - window_w // 2, y - LEVEL_PADDING - window_h // 2
                boxes = np.stack([left * to_x, top * to_y, (left + window_w - 1) * to_x,
                                  (top + window_h - 1) * to_y, scores[rows, cols]], axis=1)
                found += [tuple(box) for box in boxes.tolist()]
            level = _shrink(level)
        return _suppress(sorted(found, key=lambda box: box[4], reverse=True), self.network.nms_iou)


def _shrink(image: np.ndarray) -> np.ndarray:
    """The next pyramid level: 5/6 the size, by bilinear interpolation without smoothing, as dlib's pyramid_down<6>."""
    height, width = image.shape[:2]
    rows = np.linspace(0, height - 1, height * 5 // 6)
    cols = np.linspace(0, width - 1, width * 5 // 6)
    top, left = rows.astype(int), cols.astype(int)
    bottom, right = np.minimum(top + 1, height - 1), np.minimum(left + 1, width - 1)
    dy, dx = (rows - top)[:, None, None], (cols - left)[None, :, None]
    image = image.astype(np.float32)
    upper = image[top][:, left] * (1 - dx) + image[top][:, right] * dx
    lower = image[bottom][:, left] * (1 - dx) + image[bottom][:, right] * dx
    return np.rint(upper * (1 - dy) + lower * dy).astype(np.uint8)


def _suppress(boxes: list, iou_limit: float) -> list:
    """Greedy non-maximum suppression over boxes sorted best first (dlib's test_box_overlap by IoU)."""
    kept: list = []
    for box in boxes:
        if all(_iou(box, other) <= iou_limit for other in kept):
            kept.append(box)
    return kept


def _iou(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    height = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)

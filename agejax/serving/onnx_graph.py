"""A Keras age model's inference graph in ONNX, for ONNX Runtime to serve.

The graph holds no weights: each is an external initializer named by its Keras path
("stem_conv/kernel"), filled at load time from the checkpoint's weights.npz, so a
checkpoint stores its weights once. Images enter as uint8 NHWC, as everywhere in agejax,
and are transposed once to the NCHW layout ONNX's convolutions use.

Keras 3.15's own ONNX export on JAX (through jax2onnx 0.17) writes 4-D max-pooling
windows that ONNX Runtime 1.30 rejects, and a transpose around every convolution; this
maps the inference-time meaning of the few layer types agejax's architectures (and ensembles) use,
and refuses any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras
    import onnx

INPUT = "image"
OUTPUT = "outputs"
OPSET = 17
IR_VERSION = 9  # what onnxruntime 1.30 reads
# Keras' caffe-style preprocessing (ResNet50): BGR order, these means subtracted.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


class Graph:
    """Nodes, constants and external weights, appended as the model's layers are visited."""

    def __init__(self):
        self.nodes: list = []
        self.constants: list = []
        self.weights: dict[str, tuple[int, ...]] = {}  # Keras path -> shape, every weight the graph reads
        self._count = 0

    def add(self, op: str, inputs: list[str], **attributes) -> str:
        from onnx import helper

        self._count += 1
        output = f"{op.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def constant(self, value) -> str:
        from onnx import numpy_helper

        name = f"constant_{len(self.constants)}"
        self.constants.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def weight(self, variable) -> str:
        self.weights[variable.path] = tuple(variable.shape)
        return variable.path


def _activation(graph: Graph, x: str, activation: Callable) -> str:
    name = getattr(activation, "__name__", str(activation))
    if name == "linear":
        return x
    if name == "relu":
        return graph.add("Relu", [x])
    if name == "softmax":
        return graph.add("Softmax", [x], axis=-1)
    raise NotImplementedError(f"no ONNX mapping for activation {name!r}")


def resize_matrix(size_in: int, size_out: int, antialias: bool) -> np.ndarray:
    """(size_out, size_in) weights of jax.image.resize's "linear" method along one axis.

    Antialiased shrinking widens the triangle kernel by the scale; the weights of each output
    pixel are normalised over the input pixels they reach.
    """
    scale = size_in / size_out
    centres = (np.arange(size_out) + 0.5) * scale - 0.5
    width = max(scale, 1.0) if antialias else 1.0
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(size_in)[None, :] - centres[:, None]) / width)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _pads(padding) -> list[int]:
    """Keras' ZeroPadding2D ((top, bottom), (left, right)) as ONNX pads over NCHW."""
    (top, bottom), (left, right) = padding
    return [0, 0, top, left, 0, 0, bottom, right]


def _layer(graph: Graph, layer) -> Callable[..., str]:
    """What ``layer`` computes at inference, as a function of its input's name in the graph."""
    from keras import layers

    from agejax.data.augment import Augment
    from agejax.training.models import ResNetPreprocess, ToFloat

    kind = type(layer)
    if isinstance(layer, layers.Conv2D):  # FastConv2D too: the same weights and meaning
        if layer.data_format != "channels_last" or layer.groups != 1:
            raise NotImplementedError(f"{layer.name}: only channels_last, ungrouped convolutions")

        def conv(x, *args, **kwargs):
            kernel = graph.add("Transpose", [graph.weight(layer.kernel)], perm=[3, 2, 0, 1])  # HWIO -> OIHW
            inputs = [x, kernel] + ([graph.weight(layer.bias)] if layer.use_bias else [])
            padding = {"same": "SAME_UPPER", "valid": "VALID"}[layer.padding]  # SAME_UPPER: Keras' odd pad at the end
            out = graph.add("Conv", inputs, strides=list(layer.strides), dilations=list(layer.dilation_rate),
                            auto_pad=padding)
            return _activation(graph, out, layer.activation)

        return conv
    if isinstance(layer, layers.BatchNormalization):
        if layer.axis not in (-1, 3) or not (layer.center and layer.scale):
            raise NotImplementedError(f"{layer.name}: only channel-axis batch norm with scale and centre")
        return lambda x, *args, **kwargs: graph.add(
            "BatchNormalization",
            [x] + [graph.weight(v) for v in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)],
            epsilon=float(layer.epsilon),
        )
    if isinstance(layer, layers.ReLU):
        if layer.max_value is not None or layer.negative_slope or layer.threshold:
            raise NotImplementedError(f"{layer.name}: only the plain ReLU")
        return lambda x, *args, **kwargs: graph.add("Relu", [x])
    if isinstance(layer, layers.Activation):
        return lambda x, *args, **kwargs: _activation(graph, x, layer.activation)
    if isinstance(layer, layers.Softmax):
        return lambda x, *args, **kwargs: graph.add("Softmax", [x], axis=-1)
    if isinstance(layer, layers.MaxPooling2D):
        padding = {"same": "SAME_UPPER", "valid": "VALID"}[layer.padding]
        return lambda x, *args, **kwargs: graph.add(
            "MaxPool", [x], kernel_shape=list(layer.pool_size), strides=list(layer.strides), auto_pad=padding)
    if isinstance(layer, layers.ZeroPadding2D):
        return lambda x, *args, **kwargs: graph.add(
            "Pad", [x, graph.add("Constant", [], value_ints=_pads(layer.padding))])
    if isinstance(layer, layers.Add):
        def add(inputs, *args, **kwargs):
            total = inputs[0]
            for other in inputs[1:]:
                total = graph.add("Add", [total, other])
            return total

        return add
    if isinstance(layer, layers.GlobalAveragePooling2D):
        return lambda x, *args, **kwargs: graph.add("Flatten", [graph.add("GlobalAveragePool", [x])])
    if isinstance(layer, layers.Dense):
        def dense(x, *args, **kwargs):
            out = graph.add("MatMul", [x, graph.weight(layer.kernel)])
            if layer.use_bias:
                out = graph.add("Add", [out, graph.weight(layer.bias)])
            return _activation(graph, out, layer.activation)

        return dense
    if isinstance(layer, layers.Rescaling):  # on NCHW images: (C,) scales broadcast over channels
        def rescale(x, *args, **kwargs):
            scale, offset = (np.asarray(v, np.float32) for v in (layer.scale, layer.offset))
            if scale.ndim == 1:
                scale, offset = scale.reshape(-1, 1, 1), offset.reshape(-1, 1, 1)
            return graph.add("Add", [graph.add("Mul", [x, graph.constant(scale)]), graph.constant(offset)])

        return rescale
    if isinstance(layer, ResNetPreprocess):
        def caffe(x, *args, **kwargs):
            bgr = graph.add("Gather", [x, graph.add("Constant", [], value_ints=[2, 1, 0])], axis=1)
            return graph.add("Sub", [bgr, graph.constant(np.reshape(CAFFE_BGR_MEAN, (3, 1, 1)))])

        return caffe
    if isinstance(layer, ToFloat):  # uint8 NHWC in: cast, then NCHW for every layer after
        return lambda x, *args, **kwargs: graph.add(
            "Transpose", [graph.add("Cast", [x], to=1)], perm=[0, 3, 1, 2])  # to=1: FLOAT
    if isinstance(layer, layers.Resizing):  # an ensemble's member of another size
        if layer.interpolation != "bilinear" or layer.crop_to_aspect_ratio or layer.pad_to_aspect_ratio:
            raise NotImplementedError(f"{layer.name}: only plain bilinear resizing")

        def resize(x, *args, **kwargs):  # on NCHW images: rows @ each image @ columns.T
            _, height, width, _ = layer.input.shape
            rows = resize_matrix(height, layer.height, layer.antialias)
            columns = resize_matrix(width, layer.width, layer.antialias)
            return graph.add("MatMul", [graph.add("MatMul", [graph.constant(rows), x]), graph.constant(columns.T)])

        return resize
    if isinstance(layer, layers.Average):
        return lambda inputs, *args, **kwargs: graph.add("Mean", list(inputs))
    if isinstance(layer, (Augment, layers.Dropout)):  # inactive at inference
        return lambda x, *args, **kwargs: x
    if hasattr(layer, "_run_through_graph"):  # a nested functional model (keras.applications' ResNet50)
        return lambda x, *args, **kwargs: _run(graph, layer, x)
    raise NotImplementedError(f"no ONNX mapping for layer {layer.name!r} ({kind.__name__})")


def _run(graph: Graph, model, inputs):
    # Keras' own walk of a functional graph in dependency order, with names for tensors.
    return model._run_through_graph(inputs, operation_fn=lambda layer: _layer(graph, layer))


def to_onnx(model: keras.Model) -> onnx.ModelProto:
    """The model's inference graph: uint8 (N, S, S, 3) "image" -> "outputs", weights external."""
    from onnx import TensorProto, helper

    _, height, width, channels = model.input_shape
    graph = Graph()
    result = _run(graph, model, INPUT)
    output = result[0] if isinstance(result, list) else result
    graph.nodes.append(helper.make_node("Identity", [output], [OUTPUT], name=OUTPUT))
    external = []
    for path, shape in graph.weights.items():
        tensor = TensorProto(name=path, data_type=TensorProto.FLOAT, dims=shape,
                             data_location=TensorProto.EXTERNAL)
        tensor.external_data.add(key="location", value="weights.npz")
        external.append(tensor)
    onnx_graph = helper.make_graph(
        graph.nodes, model.name,
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["batch", height, width, channels])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", model.output_shape[-1]])],
        initializer=graph.constants + external,
    )
    return helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             ir_version=IR_VERSION, producer_name="agejax")

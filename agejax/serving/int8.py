"""An int8 inference graph of a checkpoint: ONNX Runtime's static QDQ quantization, done after
BatchNormalization is folded into the convolutions.

Quantizing forward.onnx as written leaves every BatchNormalization in float32 between a
Dequantize and a Quantize, and the result is slower than float32. So the float graph (weights
embedded) first goes through ONNX Runtime's basic graph optimisation, which folds each
BatchNormalization into its Conv, then ``quant_pre_process`` (shape inference), then
``quantize_static``: QDQ format, int8 weights per output channel, uint8 activations whose ranges
are calibrated on CALIBRATION_FACES chips of the training splits. The export keeps the result
(``forward.int8.onnx``, weights inside) only if it is faster and moves no source's validation or
test MAE, nor its mean predicted age, by more than its limit; prediction then prefers it, and
forward.onnx stays the fallback.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agejax.serving import checkpoint

if TYPE_CHECKING:
    import onnx

INT8_FILE = checkpoint.INT8_FILE
CALIBRATION_FACES = 256
MAX_BYTES = 8 * 10**6  # larger int8 graphs (the ResNet50's, 24 MB) are not shipped: the repository stays small
# Pooling and the distribution head stay float32: quantized, they shifted the CNN's mean age by
# about half a year at the same MAE; convolutions, ReLUs and max-pooling carry the arithmetic.
QUANTIZED_OPS = ["Conv", "Relu", "MaxPool"]
SETTINGS = {
    "optimisation_before": "ORT_ENABLE_BASIC (folds BatchNormalization into Conv)",
    "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process",
    "format": "QDQ", "per_channel": True, "activations": "QUInt8", "weights": "QInt8",
    "calibration": f"MinMax on {CALIBRATION_FACES} training chips",
    "quantized_ops": QUANTIZED_OPS,
}


def embedded_float_graph(folder: Path) -> onnx.ModelProto:
    """forward.onnx with weights.npz's (dequantized) weights inside, as one self-contained model."""
    # The external tensors name weights.npz; parsing the bytes does not follow them.
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string((Path(folder) / checkpoint.FORWARD_FILE).read_bytes())
    weights = checkpoint.read_weights(folder)
    initializers = []
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            initializers.append(numpy_helper.from_array(np.asarray(weights[tensor.name], np.float32), tensor.name))
        else:
            initializers.append(tensor)
    del model.graph.initializer[:]
    model.graph.initializer.extend(initializers)
    return model


def _chip_reader(chips: np.ndarray, batch: int = 32):
    """ONNX Runtime's calibration reader over uint8 chips, a batch at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    from agejax.serving.onnx_graph import INPUT

    class ChipReader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([chips[i : i + batch] for i in range(0, len(chips), batch)])

        def get_next(self):
            images = next(self.batches, None)
            return None if images is None else {INPUT: images}

    return ChipReader()


def calibration_chips(parts: list[np.ndarray], count: int = CALIBRATION_FACES, seed: int = 0) -> np.ndarray:
    """count chips drawn evenly from each source's training images (deterministic); all of a smaller source."""
    rng = np.random.default_rng(seed)
    shares = [count // len(parts) + (i < count % len(parts)) for i in range(len(parts))]
    picked = [np.asarray(images[np.sort(rng.choice(len(images), min(share, len(images)), replace=False))])
              for images, share in zip(parts, shares)]
    return np.concatenate(picked)


def quantize(folder: Path, chips: np.ndarray, out: Path | None = None) -> Path:
    """Writes the int8 graph of the checkpoint in ``folder`` (to folder/INT8_FILE by default)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out or Path(folder) / INT8_FILE)
    with tempfile.TemporaryDirectory(prefix="agejax_int8_") as work:
        work = Path(work)
        onnx.save(embedded_float_graph(folder), work / "float.onnx")
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(work / "folded.onnx")
        onnxruntime.InferenceSession(str(work / "float.onnx"), options, providers=["CPUExecutionProvider"])
        # ONNX shape inference is enough: every shape but the batch is fixed (symbolic inference needs sympy).
        quant_pre_process(work / "folded.onnx", work / "prepared.onnx", skip_symbolic_shape=True)
        reader = _chip_reader(np.ascontiguousarray(chips, np.uint8))
        quantize_static(work / "prepared.onnx", out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTIZED_OPS)
    return out


def load_int8_forward(folder: Path, image_size: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """The int8 graph on ONNX Runtime: uint8 faces -> outputs; None where there is none or it cannot serve."""
    path = Path(folder) / INT8_FILE
    if not path.exists():
        return None
    import onnxruntime

    from agejax.serving.onnx_graph import INPUT

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])
    except Exception:  # damaged: the float graph serves instead
        return None
    if [i.shape[1:] for i in session.get_inputs()] != [[image_size, image_size, 3]]:
        return None

    def forward(faces: np.ndarray) -> np.ndarray:
        return session.run(None, {INPUT: faces})[0]

    return forward

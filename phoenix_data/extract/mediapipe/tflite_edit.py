"""The two edits that let MediaPipe's Tasks API run the legacy models of mediapipe 0.10.21.

- ``add_image_normalization``: the Tasks API refuses a float-input model without input
  normalization metadata; pose_landmark_full and hand_recrop have none. This attaches a TFLite
  model metadata flatbuffer (identifier ``M001``, named ``TFLITE_METADATA``) saying: RGB input,
  mean 0, std 255 (what the legacy graphs feed these models).
- ``pad_output``: the Tasks face graph always reads a 478-point face (the refined mesh); the legacy
  face model outputs 468. One CONCATENATION op appended after the model's landmark output joins it
  with zeros, so points 0-467 are the model's and 468-477 are zeros, which the extractor drops.

Both work on the TFLite flatbuffer through the generated schema modules that ship inside
mediapipe itself (``mediapipe/tasks/metadata/*_py_generated.py``, in 0.10.21 and in 1.x). They are
loaded from their files, without importing the ``mediapipe`` package (which loads its native
library): building a bundle is safe in any process.
"""
from __future__ import annotations

import importlib.util
import io
import zipfile
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import List, Sequence, Tuple

import numpy as np

_TFLITE_IDENTIFIER = b"TFL3"
_METADATA_IDENTIFIER = b"M001"
METADATA_NAME = b"TFLITE_METADATA"


class ModelEditError(ValueError):
    """A model file that is not what the edit expects."""


def mediapipe_dir() -> Path:
    """The installed mediapipe package folder (found without importing it)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ModelEditError("mediapipe is not installed; `pip install -e .` installs the release this "
                             "Python needs (0.10.21 below 3.13, 1.x from 3.13).")
    return Path(list(spec.submodule_search_locations)[0])


def _load(name: str, file_name: str) -> ModuleType:
    path = mediapipe_dir() / "tasks" / "metadata" / file_name
    if not path.is_file():
        raise ModelEditError(f"{path} is missing: this mediapipe has no generated TFLite schema module "
                             "(phoenix_data is tested with mediapipe 0.10.21 and 1.2.x).")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def schemas() -> Tuple[ModuleType, ModuleType]:
    """(TFLite model schema, TFLite metadata schema), generated flatbuffer code with the object API."""
    return (_load("phoenix_data._tflite_schema", "schema_py_generated.py"),
            _load("phoenix_data._tflite_metadata_schema", "metadata_schema_py_generated.py"))


def _read_model(model: bytes):
    schema, _ = schemas()
    if len(model) < 8 or model[4:8] != _TFLITE_IDENTIFIER:
        raise ModelEditError(f"not a TFLite model (identifier {model[4:8]!r}, expected {_TFLITE_IDENTIFIER!r}).")
    return schema.ModelT.InitFromPackedBuf(bytearray(model), 0)


def _write_model(model_t, original: bytes) -> bytes:
    """The packed model, followed by the original's associated files.

    A model with metadata may carry a zip of associated files after its flatbuffer (labels; or an
    empty zip, which MediaPipe still opens: without it, "Unable to read associated file in zip
    archive"). Packing keeps only the flatbuffer, so the zip is written again after it.
    """
    import flatbuffers  # noqa: PLC0415 - a mediapipe dependency, needed only when building a bundle

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=_TFLITE_IDENTIFIER)
    packed = bytes(builder.Output())
    if not zipfile.is_zipfile(io.BytesIO(original)):
        return packed
    with zipfile.ZipFile(io.BytesIO(original)) as old:
        files = [(info.filename, old.read(info)) for info in old.infolist()]
    out = io.BytesIO(packed)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as new:
        for name, data in files:
            new.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def output_shapes(model: bytes) -> List[List[int]]:
    """The shapes of the first subgraph's outputs, in order."""
    graph = _read_model(model).subgraphs[0]
    return [[int(d) for d in graph.tensors[i].shape] for i in graph.outputs]


def metadata_names(model: bytes) -> List[str]:
    return [_name(m.name) for m in (_read_model(model).metadata or [])]


def add_image_normalization(model: bytes, name: str, mean: float = 0.0, std: float = 255.0) -> bytes:
    """``model`` with input metadata: an RGB image, normalized as (pixel - mean) / std."""
    schema, meta = schemas()
    model_t = _read_model(model)
    if METADATA_NAME.decode() in [_name(m.name) for m in (model_t.metadata or [])]:
        raise ModelEditError(f"{name}: already has {METADATA_NAME.decode()} metadata.")
    graph = model_t.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.tensors[graph.inputs[0]].shape) != 4:
        raise ModelEditError(f"{name}: expected one image input [1, H, W, 3].")

    image = meta.TensorMetadataT()
    image.name = "image"
    image.content = meta.ContentT()
    image.content.contentPropertiesType = meta.ContentProperties.ImageProperties
    image.content.contentProperties = meta.ImagePropertiesT()
    image.content.contentProperties.colorSpace = meta.ColorSpaceType.RGB
    norm = meta.ProcessUnitT()
    norm.optionsType = meta.ProcessUnitOptions.NormalizationOptions
    norm.options = meta.NormalizationOptionsT()
    norm.options.mean = [float(mean)] * 3
    norm.options.std = [float(std)] * 3
    image.processUnits = [norm]
    outputs = []
    for index in graph.outputs:
        out = meta.TensorMetadataT()
        out.name = _name(graph.tensors[index].name)
        outputs.append(out)
    subgraph = meta.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = outputs
    model_meta = meta.ModelMetadataT()
    model_meta.name = name
    model_meta.minParserVersion = "1.0.0"
    model_meta.subgraphMetadata = [subgraph]

    import flatbuffers  # noqa: PLC0415 - see _write_model

    builder = flatbuffers.Builder(256)
    builder.Finish(model_meta.Pack(builder), file_identifier=_METADATA_IDENTIFIER)
    blob = bytes(builder.Output())

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(blob, dtype=np.uint8)
    model_t.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME.decode()
    entry.buffer = len(model_t.buffers) - 1
    model_t.metadata = list(model_t.metadata or []) + [entry]
    return _write_model(model_t, model)


def _opcode_index(schema: ModuleType, model_t, builtin: int) -> int:
    for index, code in enumerate(model_t.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = builtin
    code.version = 1
    model_t.operatorCodes.append(code)
    return len(model_t.operatorCodes) - 1


def _new_tensor(schema: ModuleType, model_t, name: str, shape: Sequence[int], data: bytes = b"") -> int:
    buffer = schema.BufferT()
    if data:
        buffer.data = np.frombuffer(data, dtype=np.uint8)
    model_t.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = np.array(shape, dtype=np.int32)
    tensor.type = schema.TensorType.FLOAT32
    tensor.buffer = len(model_t.buffers) - 1
    graph = model_t.subgraphs[0]
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


PAD_TENSOR_NAME = "phoenix_data_pad_zeros"


def pad_output(model: bytes, output: int, extra: int) -> bytes:
    """``model`` whose output number ``output`` (float32, [..., N]) becomes [..., N + extra]: zeros appended."""
    schema, _ = schemas()
    model_t = _read_model(model)
    graph = model_t.subgraphs[0]
    if not 0 <= output < len(graph.outputs):
        raise ModelEditError(f"output {output}: the model has {len(graph.outputs)} outputs.")
    source = graph.outputs[output]
    tensor = graph.tensors[source]
    if tensor.type != schema.TensorType.FLOAT32:
        raise ModelEditError(f"output {output} is not float32 (type {tensor.type}).")
    shape = [int(d) for d in tensor.shape]
    zeros = _new_tensor(schema, model_t, PAD_TENSOR_NAME, shape[:-1] + [extra],
                        np.zeros(int(np.prod(shape[:-1])) * extra, np.float32).tobytes())
    padded = _new_tensor(schema, model_t, _name(tensor.name) + "_padded", shape[:-1] + [shape[-1] + extra])
    op = schema.OperatorT()
    op.opcodeIndex = _opcode_index(schema, model_t, schema.BuiltinOperator.CONCATENATION)
    op.inputs = np.array([source, zeros], dtype=np.int32)
    op.outputs = np.array([padded], dtype=np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
    op.builtinOptions = schema.ConcatenationOptionsT()
    op.builtinOptions.axis = len(shape) - 1
    graph.operators.append(op)
    outputs = [int(i) for i in graph.outputs]
    outputs[output] = padded
    graph.outputs = np.array(outputs, dtype=np.int32)
    return _write_model(model_t, model)


def is_padded(model: bytes) -> bool:
    """Whether ``pad_output`` made this model's outputs (its extra points are zeros, not a model's)."""
    graph = _read_model(model).subgraphs[0]
    return any(_name(t.name) == PAD_TENSOR_NAME for t in graph.tensors)

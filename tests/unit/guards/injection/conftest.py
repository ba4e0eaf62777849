"""A tiny sequence classifier, built here: an ONNX graph, a WordLevel tokenizer, its labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

# Words and how much each one says "benign" (column 0) or "injection" (column 1).
WEIGHTS = {
    "[UNK]": (0.2, 0.0),
    "[PAD]": (0.0, 0.0),
    "ignore": (0.0, 2.0),
    "previous": (0.0, 1.5),
    "instructions": (0.0, 1.5),
    "hello": (1.5, 0.0),
    "weather": (1.5, 0.0),
    "sunny": (1.0, 0.0),
}


def build_model(directory: Path, *, labels: dict[int, str] | None = None) -> Path:
    """Write model.onnx, tokenizer.json and config.json to `directory`: logits = sum of weights."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {word: index for index, word in enumerate(WEIGHTS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))

    table = numpy.array(list(WEIGHTS.values()), dtype=numpy.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last"], ["mask_3d"]),
        helper.make_node("Mul", ["embedded", "mask_3d"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "seq_axis"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_injection_classifier",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(numpy.array([-1], dtype=numpy.int64), "last"),
            numpy_helper.from_array(numpy.array([1], dtype=numpy.int64), "seq_axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / "model.onnx"))
    id2label = labels if labels is not None else {0: "SAFE", 1: "INJECTION"}
    (directory / "config.json").write_text(
        json.dumps({"id2label": {str(k): v for k, v in id2label.items()}})
    )
    return directory


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A directory with a working tiny classifier."""
    return build_model(tmp_path / "model")

"""A pluggable ML classifier for injected instructions: any sequence classifier exported to ONNX.

A model directory holds what Hugging Face exports produce:

    model.onnx        a sequence classifier: int64 `input_ids`, `attention_mask`
                      (and `token_type_ids`, if the model has them) in, logits
                      [batch, labels] out
    tokenizer.json    its `tokenizers` tokenizer
    config.json       optional: `id2label`, to find the label meaning "injection"

Prompt Guard 2 (labels BENIGN / MALICIOUS) and the DeBERTa-style injection
classifiers (SAFE / INJECTION) exported with `optimum-cli export onnx` fit
as they are. Nothing is downloaded: the model is read from the local path,
loaded and run once on a probe at start, so a missing or broken model stops
the gateway at start, not at its first call.

Needs the `ml` extra (`pip install 'ztgate[ml]'`: onnxruntime, tokenizers).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ztgate.errors import ConfigError

# Label names that mean "this text carries an injection / jailbreak".
_POSITIVE = ("injection", "jailbreak", "malicious", "unsafe", "attack", "label_1")


class Classifier(Protocol):
    """Scores texts: the probability that each one carries injected instructions."""

    name: str

    def classify(self, texts: Sequence[str]) -> list[float]:
        """One probability in [0, 1] per text, in order."""
        ...


class OnnxClassifier:
    """A sequence classifier run by ONNX Runtime on the CPU, with its `tokenizers` tokenizer."""

    def __init__(
        self,
        session: Any,
        tokenizer: Any,
        *,
        positive: int,
        max_tokens: int,
        name: str,
    ) -> None:
        """Use a loaded session and tokenizer (see `load`)."""
        self.name = name
        self._session = session
        self._tokenizer = tokenizer
        self._positive = positive
        self._inputs = {i.name for i in session.get_inputs()}
        self._max_tokens = max_tokens

    @classmethod
    def load(cls, path: Path, *, label: str = "", max_tokens: int = 512) -> OnnxClassifier:
        """Load the model in directory `path` and check that it runs.

        `label` names the positive label (default: the one called injection,
        jailbreak, malicious or unsafe; else index 1 of two).

        Raises:
            ConfigError: the path, the files, the model or the tokenizer is
                missing or unusable, or the `ml` extra is not installed.
        """
        where = str(path)
        model, tokenizer_file = path / "model.onnx", path / "tokenizer.json"
        for required in (model, tokenizer_file):
            if not required.is_file():
                raise ConfigError(where, "guards.injection.classifier_path", f"no {required}")
        try:
            import onnxruntime  # an optional dependency: imported only when configured
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(
                where, "guards.injection.classifier_path", "install the ml extra: ztgate[ml]"
            ) from exc
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # the tokenizers package raises plain Exceptions
            raise ConfigError(where, "tokenizer.json", f"not a tokenizer: {exc}") from exc
        tokenizer.enable_truncation(max_tokens)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors share no public base class
            raise ConfigError(where, "model.onnx", f"not a loadable ONNX model: {exc}") from exc
        labels = _labels(path / "config.json", where)
        classifier = cls(
            session,
            tokenizer,
            positive=_positive_index(labels, label, where),
            max_tokens=max_tokens,
            name=path.name,
        )
        classifier._probe(where, len(labels) if labels else None)
        return classifier

    def classify(self, texts: Sequence[str]) -> list[float]:
        """The positive label's softmax probability for each text."""
        if not texts:
            return []
        logits = self._run(texts)
        return [_softmax(row)[self._positive] for row in logits]

    def _run(self, texts: Sequence[str]) -> list[list[float]]:
        import numpy  # comes with onnxruntime

        encodings = self._tokenizer.encode_batch(list(texts))
        width = max(1, max(len(e.ids) for e in encodings))
        ids = numpy.zeros((len(encodings), width), dtype=numpy.int64)
        mask = numpy.zeros((len(encodings), width), dtype=numpy.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = numpy.zeros_like(ids)
        feed = {key: value for key, value in feed.items() if key in self._inputs}
        outputs = self._session.run(None, feed)
        logits: list[list[float]] = outputs[0].tolist()
        return logits

    def _probe(self, where: str, labels: int | None) -> None:
        missing = {"input_ids", "attention_mask"} - self._inputs
        if "input_ids" in missing:
            raise ConfigError(where, "model.onnx", "the model has no input_ids input")
        try:
            logits = self._run(["probe"])
        except Exception as exc:  # any failure to run the graph is a broken model
            raise ConfigError(where, "model.onnx", f"the model does not run: {exc}") from exc
        width = len(logits[0]) if logits and isinstance(logits[0], list) else 0
        if width < 2 or (labels is not None and width != labels):
            raise ConfigError(
                where, "model.onnx", f"expected logits [batch, labels], got {width} columns"
            )
        if self._positive >= width:
            raise ConfigError(where, "config.json", "the positive label is not among the outputs")


def _labels(config: Path, where: str) -> dict[int, str]:
    if not config.is_file():
        return {}
    try:
        document = json.loads(config.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in document.get("id2label", {}).items()}
    except (ValueError, AttributeError, OSError) as exc:
        raise ConfigError(where, "config.json", f"unreadable id2label: {exc}") from exc


def _positive_index(labels: dict[int, str], wanted: str, where: str) -> int:
    if wanted:
        for index, name in labels.items():
            if name.lower() == wanted.lower():
                return index
        raise ConfigError(where, "guards.injection.classifier_label", f"no label {wanted!r}")
    for index, name in sorted(labels.items()):
        if name.lower() in _POSITIVE:
            return index
    return 1


def _softmax(row: Sequence[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(value - top) for value in row]
    total = sum(exps)
    return [value / total for value in exps]

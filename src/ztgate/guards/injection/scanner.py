"""The result scanner: the built-in detector and an optional ML classifier, with thresholds.

`Scanner.scan(value)` walks a result (a JSON value, text or bytes), runs the
detector over all its strings at once and the classifier over its longer
strings, and says whether the result is flagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ztgate.config import InjectionSettings, Settings
from ztgate.guards.injection.classifier import Classifier, OnnxClassifier
from ztgate.guards.injection.detector import (
    Finding,
    Segment,
    Strings,
    characters,
    detect,
    score,
    strings,
)

# The classifier reads the first strings of a result that are at least this
# long, up to this many of them, each cut to this many characters (a model
# reads a few hundred tokens at most).
_CLASSIFY_MIN_CHARS = 16
_CLASSIFY_MAX_STRINGS = 32
_CLASSIFY_MAX_CHARS = 4096


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What a scan of one result found."""

    findings: tuple[Finding, ...] = ()
    score: float = 0.0
    flagged: bool = False
    truncated: bool = False
    characters: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """`kind xN` for each kind found, most frequent first (never any matched text)."""
        return ", ".join(f"{kind} x{count}" for kind, count in self.kinds.items())


class Scanner:
    """Scans results with the detector and, if configured, a classifier."""

    def __init__(
        self,
        *,
        detector: bool = True,
        threshold: float = 0.5,
        classifier: Classifier | None = None,
        classifier_threshold: float = 0.5,
    ) -> None:
        """Use the detector (unless `detector` is false) and `classifier`, if any."""
        self.detector = detector
        self.threshold = threshold
        self.classifier = classifier
        self.classifier_threshold = classifier_threshold

    @classmethod
    def from_settings(cls, settings: Settings) -> Scanner:
        """The scanner `[guards.injection]` describes, its classifier loaded now.

        Raises:
            ConfigError: the classifier cannot be loaded.
        """
        options: InjectionSettings = settings.guards.injection
        classifier = None
        if options.classifier_path is not None:
            classifier = OnnxClassifier.load(
                settings.path(options.classifier_path), label=options.classifier_label
            )
        return cls(
            detector=options.detector,
            threshold=options.threshold,
            classifier=classifier,
            classifier_threshold=options.classifier_threshold,
        )

    @property
    def enabled(self) -> bool:
        """True if anything scans at all."""
        return self.detector or self.classifier is not None

    def strings(self, value: Any) -> Strings:
        """The strings of `value` this scanner reads (cheap: a walk, no scanning)."""
        return strings(value)

    def scan_segments(self, parts: Sequence[Segment]) -> ScanReport:
        """Scan strings collected by `strings`."""
        findings: list[Finding] = []
        truncated = False
        flagged = False
        worst = 0.0
        if self.detector and parts:
            detection = detect(parts)
            findings, truncated = detection.findings, detection.truncated
            worst = score(findings)
            flagged = worst >= self.threshold
        if self.classifier is not None:
            for finding in self._classify(parts):
                findings.append(finding)
                worst = max(worst, finding.score)
                flagged = flagged or finding.score >= self.classifier_threshold
        kinds = dict(Counter(f.kind for f in findings).most_common()) if findings else {}
        return ScanReport(tuple(findings), worst, flagged, truncated, characters(parts), kinds)

    def scan(self, value: Any) -> ScanReport:
        """Scan every string of `value`."""
        return self.scan_segments(self.strings(value))

    def _classify(self, parts: Sequence[Segment]) -> list[Finding]:
        assert self.classifier is not None  # noqa: S101 - checked by the caller
        chosen: list[Segment] = []
        for part in parts:
            if not part.in_key and len(part.text.strip()) >= _CLASSIFY_MIN_CHARS:
                chosen.append(part)
                if len(chosen) == _CLASSIFY_MAX_STRINGS:
                    break
        if not chosen:
            return []
        scores = self.classifier.classify([part.text[:_CLASSIFY_MAX_CHARS] for part in chosen])
        return [
            Finding(
                "classifier",
                f"classifier.{self.classifier.name}",
                probability,
                part.pointer,
                0,
                len(part.text),
            )
            for part, probability in zip(chosen, scores, strict=True)
            if probability >= min(self.classifier_threshold, 0.5)
        ]

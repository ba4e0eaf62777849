"""Evaluate the built-in injection detector on a corpus built from the `agentdojo` package.

    python -m venv .venv-eval
    .venv-eval/bin/pip install -e . agentdojo     # agentdojo is MIT-licensed; heavy deps
    .venv-eval/bin/python benchmarks/injection_eval.py [--write docs/security-evaluation.md]

The corpus is built at run time from what the installed package ships
(nothing is vendored):

- Benign: every record of the four AgentDojo environments (emails, calendar
  events, files, hotels, restaurants, car rentals, flights, reviews, Slack
  messages, web pages, bank transactions, ...), each as the JSON a tool would
  return, with the injection vectors at their benign defaults; plus every user
  task's prompt (text addressed to an assistant with a task: the hardest
  negatives, though a tool result rarely carries them).
- Injected: for every injection task's goal and every attack template of the
  package (its attack classes' jailbreak strings), one record that holds an
  injection vector, with the attack text in that vector.

Split (deterministic, by SHA-256 of a group key, 60/20/20 train/dev/test):
injected samples by (suite, injection task), so the test split's goals never
appear in train or dev; benign records by their own identity. Only the dev
split was used to tune (weights and threshold); the test split is reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ztgate.guards.injection.detector import scan_value, score

VERSION = "v1.2.1"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Sample:
    """One tool result, labelled."""

    id: str
    group: str
    injected: bool
    family: str
    suite: str
    value: Any

    @property
    def split(self) -> str:
        bucket = int(hashlib.sha256(self.group.encode()).hexdigest(), 16) % 10
        return "train" if bucket < 6 else "dev" if bucket < 8 else "test"


def records(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """The leaf records of an environment: dicts of scalars (and lists of scalars), or strings."""
    if isinstance(value, dict):
        if path and all(not _nested(child) for child in value.values()):
            if len(value) > 20 and all(isinstance(v, str) for v in value.values()):
                for key, child in value.items():  # e.g. web pages by URL: one page each
                    yield f"{path}/{key}", {"url": key, "content": child}
            else:
                yield path, value
            return
        for key, child in value.items():
            yield from records(child, f"{path}/{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            if isinstance(child, str) and path:
                yield f"{path}/{index}", child
            else:
                yield from records(child, f"{path}/{index}")


def _nested(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(isinstance(v, dict | list) for v in value)


def dumped(env: Any) -> Any:
    return json.loads(env.model_dump_json())


def templates(suite: Any) -> dict[str, str]:
    """Each registered attack's text, with `{goal}` where the injection task's goal goes."""
    import agentdojo.attacks  # noqa: F401 - registers the attacks
    from agentdojo.attacks.attack_registry import ATTACKS

    pipeline = SimpleNamespace(name="gpt-4o-2024-05-13")
    found = {}
    for name, attack_class in sorted(ATTACKS.items()):
        if name in ("manual", "tool_knowledge"):  # needs a human / a ground-truth run
            continue
        attack = attack_class(suite, pipeline)
        text = getattr(attack, "jailbreak", None) or getattr(attack, "_JB_STRING", None)
        if text is None:  # the DoS attacks: no goal
            text = attack._DOS_STRING
        found[name] = text.replace("{user}", getattr(attack, "user_name", "the user")).replace(
            "{model}", getattr(attack, "model_name", "the AI language model")
        )
    return found


def corpus() -> list[Sample]:
    from agentdojo.task_suite.load_suites import get_suites

    samples: list[Sample] = []
    for suite_name, suite in sorted(get_suites(VERSION).items()):
        vectors = suite.get_injection_vector_defaults()
        clean = dumped(suite.load_and_inject_default_environment({}))
        for path, record in records(clean):
            group = f"{suite_name}{path}"
            samples.append(Sample(group, group, False, "benign", suite_name, record))
        for task_id, task in sorted(suite.user_tasks.items()):
            group = f"{suite_name}/prompt/{task_id}"
            samples.append(Sample(group, group, False, "user-prompt", suite_name, task.PROMPT))
        # Which record each vector lands in: inject canaries, find them.
        canaries = {vector: f"CANARY{i}X" for i, vector in enumerate(sorted(vectors))}
        marked = dumped(suite.load_and_inject_default_environment(canaries))
        carriers = {}
        for path, record in records(marked):
            text = json.dumps(record)
            for vector, canary in canaries.items():
                if canary in text:
                    carriers[vector] = path
        attack_texts = templates(suite)
        rng = random.Random(suite_name)  # a fixed, reproducible choice
        vector_names = sorted(carriers)
        for task_id, task in sorted(suite.injection_tasks.items()):
            for family, template in attack_texts.items():
                text = template.replace("{goal}", task.GOAL).replace("{task}", "the task")
                vector = rng.choice(vector_names)
                env = dumped(suite.load_and_inject_default_environment({vector: text}))
                record = dict(records(env))[carriers[vector]]
                samples.append(
                    Sample(
                        f"{suite_name}/{task_id}/{family}",
                        f"{suite_name}/{task_id}",
                        True,
                        family,
                        suite_name,
                        record,
                    )
                )
    return samples


@dataclass
class Scored:
    sample: Sample
    score: float
    seconds: float
    size: int


def run(samples: list[Sample]) -> list[Scored]:
    scored = []
    for sample in samples:
        size = len(json.dumps(sample.value, ensure_ascii=False).encode())
        started = time.perf_counter()
        value = score(scan_value(sample.value))
        scored.append(Scored(sample, value, time.perf_counter() - started, size))
    return scored


def metrics(scored: list[Scored], threshold: float) -> dict[str, Any]:
    tp = sum(1 for s in scored if s.sample.injected and s.score >= threshold)
    fn = sum(1 for s in scored if s.sample.injected and s.score < threshold)
    fp = sum(1 for s in scored if not s.sample.injected and s.score >= threshold)
    tn = sum(1 for s in scored if not s.sample.injected and s.score < threshold)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"tp": tp, "fn": fn, "fp": fp, "tn": tn, "precision": precision, "recall": recall,
            "fpr": fpr, "f1": f1}  # fmt: skip


def report(samples: list[Sample]) -> str:
    scored = run(samples)
    by_split: dict[str, list[Scored]] = defaultdict(list)
    for item in scored:
        by_split[item.sample.split].append(item)
    lines = []
    counts = Counter((s.split, s.injected) for s in samples)
    lines.append("| split | injected | benign |")
    lines.append("| --- | ---: | ---: |")
    for split in ("train", "dev", "test"):
        lines.append(f"| {split} | {counts[(split, True)]} | {counts[(split, False)]} |")
    lines.append("")
    lines.append("Dev split, by threshold (what the threshold was chosen on):")
    lines.append("")
    lines.append("| threshold | precision | recall | FPR | F1 |")
    lines.append("| ---: | ---: | ---: | ---: | ---: |")
    for threshold in THRESHOLDS:
        m = metrics(by_split["dev"], threshold)
        lines.append(
            f"| {threshold:.1f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['fpr']:.3f} "
            f"| {m['f1']:.3f} |"
        )
    best = max(THRESHOLDS, key=lambda t: (metrics(by_split["dev"], t)["f1"], -t))
    lines.append("")
    lines.append(f"Best dev F1 at threshold {best:.1f}; the default is {DEFAULT_THRESHOLD}.")
    lines.append("")
    lines.append("**Held-out test split** (threshold 0.5, the default):")
    lines.append("")
    test = by_split["test"]
    m = metrics(test, DEFAULT_THRESHOLD)
    lines.append("| precision | recall | FPR | TP | FN | FP | TN |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines.append(
        f"| {m['precision']:.3f} | {m['recall']:.3f} | {m['fpr']:.3f} | {m['tp']} | {m['fn']} "
        f"| {m['fp']} | {m['tn']} |"
    )
    lines.append("")
    lines.append("Test split, recall per attack family (all English: AgentDojo ships no others):")
    lines.append("")
    lines.append("| family | samples | recall |")
    lines.append("| --- | ---: | ---: |")
    families: dict[str, list[Scored]] = defaultdict(list)
    for item in test:
        if item.sample.injected:
            families[item.sample.family].append(item)
    for family, items in sorted(families.items()):
        hit = sum(1 for s in items if s.score >= DEFAULT_THRESHOLD)
        lines.append(f"| {family} | {len(items)} | {hit / len(items):.3f} |")
    lines.append("")
    lines.append("Test split, false positives per kind of benign sample:")
    lines.append("")
    lines.append("| kind | samples | FPR |")
    lines.append("| --- | ---: | ---: |")
    for family in ("benign", "user-prompt"):
        items = [s for s in test if s.sample.family == family]
        fp = sum(1 for s in items if s.score >= DEFAULT_THRESHOLD)
        lines.append(f"| {family} | {len(items)} | {fp / max(1, len(items)):.3f} |")
    lines.append("")
    per_kib = [s.seconds * 1e6 / (s.size / 1024) for s in test]
    total_bytes = sum(s.size for s in test)
    total_seconds = sum(s.seconds for s in test)
    lines.append(
        f"Latency on the test split ({len(test)} results, {total_bytes / 1024:.0f} KiB, "
        f"median {statistics.median(s.size for s in test)} bytes): median "
        f"{statistics.median(per_kib):.0f} µs per KiB, p95 "
        f"{statistics.quantiles(per_kib, n=20)[-1]:.0f} µs per KiB; "
        f"{total_bytes / 1048576 / total_seconds:.1f} MiB/s over all of them (small results "
        "are dominated by the per-call cost, about 15-25 µs: see performance.md)."
    )
    lines.append("")
    lines.append(f"Machine: {platform.processor() or platform.machine()}, Python "
                 f"{platform.python_version()}, one core.")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", type=Path, help="replace the figures section of this doc")
    args = parser.parse_args()
    samples = corpus()
    text = report(samples)
    print(text)
    if args.write:
        begin, end = "<!-- injection-eval:begin -->", "<!-- injection-eval:end -->"
        doc = args.write.read_text(encoding="utf-8")
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        args.write.write_text(f"{head}{begin}\n{text}\n{end}{tail}", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

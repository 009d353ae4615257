"""Timing helpers shared by the benchmarks (:mod:`layers` and :mod:`models` beside this file).

Subjects are timed as a user's script runs them: an ordinary process, no allocator or scheduler
tuning, torch's default thread count unless a benchmark's ``--threads`` says otherwise. Subjects
that are compared are timed in the same process, in interleaved rounds whose order rotates each
round, so a slow spell of the machine hits them all alike; a time is the median of a subject's steps.
A ratio to a baseline is paired by round (:func:`paired_ratio`): the host's speed drifts over minutes,
and a subject and its baseline timed seconds apart in one round see the same machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lipnb.orthogonal import ORTHOGONALIZERS

WARMUP_STEPS = 5
LEARNING_RATE = 1e-3


@dataclass
class Subject:
    """A module with its timed training step, optional eval step, and the step times collected so far."""

    name: str
    module: nn.Module
    train_step: Callable[[], None]
    eval_step: Callable[[], None] | None
    train_times: list[float] = field(default_factory=list)
    eval_times: list[float] = field(default_factory=list)
    train_round_ms: list[float] = field(default_factory=list)  # the median step of each round
    eval_round_ms: list[float] = field(default_factory=list)

    @property
    def train_ms(self) -> float:
        return median_ms(self.train_times)

    @property
    def eval_ms(self) -> float:
        return median_ms(self.eval_times)


@dataclass(frozen=True)
class Variant:
    """A conv kind with an orthogonalizer, or ``None`` for the library default (no option passed)."""

    kind: str
    orthogonalizer: str | None = None

    @property
    def label(self) -> str:
        return self.kind if self.orthogonalizer is None else f"{self.kind}[{self.orthogonalizer}]"

    @property
    def options(self) -> dict[str, Any]:
        return {} if self.orthogonalizer is None else {"orthogonalizer": self.orthogonalizer}


def training_subject(name: str, module: nn.Module, x: Tensor, loss: Callable[[Tensor], Tensor]) -> Subject:
    """``module`` with a fresh Adam optimizer; a training step is zero_grad, forward, ``loss``, backward, step.

    The eval step is a forward of ``x`` under ``torch.no_grad()`` (run in eval mode by :func:`measure`).
    """
    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)

    def train_step() -> None:
        optimizer.zero_grad()
        loss(module(x)).backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step() -> None:
        module(x)

    return Subject(name, module, train_step, eval_step)


def timed(step: Callable[[], None], count: int) -> list[float]:
    """Seconds taken by each of ``count`` calls of ``step``."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def measure(subject: Subject, steps: int) -> tuple[list[float], list[float]]:
    """``steps`` timed training steps, then ``steps`` timed eval steps (none if the subject has none)."""
    subject.module.train()
    train_times = timed(subject.train_step, steps)
    if subject.eval_step is None:
        return train_times, []
    subject.module.eval()
    subject.eval_step()  # untimed: recompute the eval-mode weight caches after the optimizer steps
    return train_times, timed(subject.eval_step, steps)


def interleaved_rounds(subjects: Sequence[Subject], steps: int, rounds: int, warmup: int = WARMUP_STEPS) -> None:
    """Warm every subject up, then time them all in ``rounds`` rounds, the order rotated each round."""
    for subject in subjects:
        measure(subject, warmup)
    for index in range(rounds):
        shift = index % len(subjects)
        for subject in [*subjects[shift:], *subjects[:shift]]:
            train_times, eval_times = measure(subject, steps)
            subject.train_times += train_times
            subject.eval_times += eval_times
            subject.train_round_ms.append(median_ms(train_times))
            if eval_times:
                subject.eval_round_ms.append(median_ms(eval_times))


@dataclass(frozen=True)
class PairedRatio:
    """A subject's time over its baseline's: the median over rounds, and the lowest and highest round."""

    median: float
    low: float
    high: float

    @property
    def spread(self) -> str:
        return f"{self.low:.2f}–{self.high:.2f}"


def paired_ratio(subject: Subject, baseline: Subject, phase: str = "train") -> PairedRatio:
    """Round by round, ``subject``'s median ``phase`` ("train" or "eval") step over ``baseline``'s in the same round."""
    pairs = zip(getattr(subject, f"{phase}_round_ms"), getattr(baseline, f"{phase}_round_ms"), strict=True)
    ratios = [time / baseline_time for time, baseline_time in pairs]
    return PairedRatio(statistics.median(ratios), min(ratios), max(ratios))


def median_ms(times: Iterable[float]) -> float:
    """The median of ``times`` (seconds), in milliseconds."""
    return 1000 * statistics.median(times)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where available, else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def metadata(load_before: float, **settings: Any) -> dict[str, Any]:
    """The machine, the software, the load average before and now, the benchmark's ``settings``, the command."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        **settings,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
    }


def require_positive_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse a ``--batch``, ``--steps``, ``--rounds`` or ``--threads`` below 1 (``--threads`` may be unset)."""
    for name in ("batch", "steps", "rounds", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive integer; got {value}")


def parse_choices(text: str, choices: Iterable[str], option: str, parser: argparse.ArgumentParser) -> list[str]:
    """The names of the comma list ``text`` (duplicates dropped); a parser error if one is not in ``choices``."""
    choices = tuple(choices)
    names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        parser.error(f"{option}: unknown or empty {unknown or text!r}; choose from {','.join(choices)}")
    return names


def add_orthogonalizer_option(parser: argparse.ArgumentParser) -> None:
    """``--orthogonalizer NAME[,NAME...]``: each name is timed as its own variant of the kinds that take it."""
    parser.add_argument(
        "--orthogonalizer",
        default=None,
        help=f"comma list of orthogonalizers ({','.join(ORTHOGONALIZERS)}), each timed as a variant "
        "such as bcop[bjorck] (default: the library default, no option passed)",
    )


def parse_orthogonalizers(text: str | None, parser: argparse.ArgumentParser) -> list[str | None]:
    """The orthogonalizers of ``--orthogonalizer``; ``[None]`` (the library default) when it is not given."""
    if text is None:
        return [None]
    return list(parse_choices(text, ORTHOGONALIZERS, "--orthogonalizer", parser))

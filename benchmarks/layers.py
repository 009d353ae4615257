"""Speed of every Lipschitz convolution kind relative to a plain circular ``nn.Conv2d``.

For each conv kind of :data:`lipnb.layers.CONV_KINDS` and each conv shape of the BCOP paper's
Small and Large networks (MNIST 1×28×28 and CIFAR-10 3×32×32 inputs), this measures the median
time of

* a **training step**: ``zero_grad`` + forward + backward of ``out.square().mean()`` + Adam step;
* an **eval forward**: ``model.eval()`` under ``torch.no_grad()`` (the kernel is cached),

each reported as a ratio to ``nn.Conv2d(cin, cout, k, padding="same", padding_mode="circular")``
of the same shape, timed in the same process and the same interleaved rounds (the physical limit).
Strided paper layers are invertible downsampling (pixel unshuffle) + a stride-1 conv; the
downsampling is the same permutation for every kind, so only the stride-1 conv is timed.

Run from the repository root (prints a Markdown table, writes ``benchmarks/results/layers.json``)::

    python benchmarks/layers.py
    python benchmarks/layers.py --shapes headline --kinds bcop,plain
    python benchmarks/layers.py --quick    # smoke test: batch 8, 2 steps, 2 rounds

On a machine shared with other busy processes, add ``--threads 1``: a multi-threaded step waits
for its slowest thread, and a thread that has to share a core with another process is only
scheduled on timer ticks, which made 2-thread steps up to 8× slower and their ratios meaningless.
The script also keeps glibc from returning freed memory to the OS (see :func:`keep_freed_memory`).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor, nn

from lipnb.layers import CONV_KINDS, lipschitz_conv

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "layers.json"
BASELINE = "nn.Conv2d"
WARMUP_STEPS = 5
LEARNING_RATE = 1e-3
TRAIN_TARGET = 1.2  # README: BCOP training step ≤ 1.2× nn.Conv2d at the headline shapes
EVAL_TARGET = 1.05  # README: BCOP eval forward ≤ 1.05× nn.Conv2d at the headline shapes


@dataclass(frozen=True)
class Shape:
    """A stride-1 circular conv ``cin → cout``, ``kernel × kernel``, on a ``size × size`` map."""

    network: str
    layer: str
    cin: int
    cout: int
    kernel: int
    size: int
    headline: bool = False

    @property
    def label(self) -> str:
        k, s = self.kernel, self.size
        return f"{self.network} {self.layer} {self.cin}→{self.cout} {k}×{k} @{s}×{s}"


# A paper layer "conv c 4×4 s2" on a cin × n × n input becomes pixel unshuffle by 2
# (cin → 4·cin channels, n → n/2) followed by a stride-1 conv with kernel ⌈4/2⌉ = 2.
SHAPES: tuple[Shape, ...] = (
    # README headline: 32→32 3×3 on 28×28 (not a paper layer: Large's width at MNIST resolution).
    Shape("headline", "conv", 32, 32, 3, 28, headline=True),
    # Small (Wong et al. 2018, as adapted by the paper): conv 16 4×4 s2 → conv 32 4×4 s2 → FC 100 → FC 10.
    Shape("small-mnist", "conv1", 4, 16, 2, 14),  # 1→16 4×4 s2 on 28×28
    Shape("small-mnist", "conv2", 64, 32, 2, 7),  # 16→32 4×4 s2 on 14×14
    Shape("small-cifar", "conv1", 12, 16, 2, 16),  # 3→16 4×4 s2 on 32×32
    Shape("small-cifar", "conv2", 64, 32, 2, 8),  # 16→32 4×4 s2 on 16×16
    # Large: conv 32 3×3 s1 → conv 32 4×4 s2 → conv 64 3×3 s1 → conv 64 4×4 s2, then FC 512, 512, 10.
    Shape("large-mnist", "conv1", 1, 32, 3, 28),  # 1→32 3×3 s1 on 28×28
    Shape("large-mnist", "conv2", 128, 32, 2, 14, headline=True),  # 32→32 4×4 s2 on 28×28; README headline
    Shape("large-mnist", "conv3", 32, 64, 3, 14),  # 32→64 3×3 s1 on 14×14
    Shape("large-mnist", "conv4", 256, 64, 2, 7),  # 64→64 4×4 s2 on 14×14
    Shape("large-cifar", "conv1", 3, 32, 3, 32),  # 3→32 3×3 s1 on 32×32
    Shape("large-cifar", "conv2", 128, 32, 2, 16),  # 32→32 4×4 s2 on 32×32
    Shape("large-cifar", "conv3", 32, 64, 3, 16),  # 32→64 3×3 s1 on 16×16
    Shape("large-cifar", "conv4", 256, 64, 2, 8),  # 64→64 4×4 s2 on 16×16
)


@dataclass
class Subject:
    """A module under test with its two timed steps and the per-step times collected so far."""

    name: str
    module: nn.Module
    train_step: Callable[[], None]
    eval_step: Callable[[], None]
    train_times: list[float]
    eval_times: list[float]


@dataclass(frozen=True)
class KindResult:
    train_ms: float
    eval_ms: float
    train_ratio: float
    eval_ratio: float


@dataclass(frozen=True)
class Row:
    shape: Shape
    plain_train_ms: float
    plain_eval_ms: float
    kinds: dict[str, KindResult]

    def to_json(self) -> dict:
        return {
            **asdict(self.shape),
            "plain_train_ms": self.plain_train_ms,
            "plain_eval_ms": self.plain_eval_ms,
            "kinds": {kind: asdict(result) for kind, result in self.kinds.items()},
        }


def make_subject(name: str, module: nn.Module, x: Tensor) -> Subject:
    """Wrap ``module`` with a fresh Adam optimizer and its training and eval steps on ``x``."""
    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)

    def train_step() -> None:
        optimizer.zero_grad()
        module(x).square().mean().backward()
        optimizer.step()

    @torch.no_grad()
    def eval_step() -> None:
        module(x)

    return Subject(name, module, train_step, eval_step, [], [])


def make_subjects(shape: Shape, kinds: list[str], batch: int) -> list[Subject]:
    """The baseline and one layer per kind, all seeded alike and sharing one fixed input."""
    torch.manual_seed(0)
    x = torch.rand(batch, shape.cin, shape.size, shape.size)
    baseline = nn.Conv2d(shape.cin, shape.cout, shape.kernel, padding="same", padding_mode="circular")
    subjects = [make_subject(BASELINE, baseline, x)]
    for kind in kinds:
        layer = lipschitz_conv(kind, shape.cin, shape.cout, shape.kernel)
        subjects.append(make_subject(kind, layer, x))
    return subjects


def timed(step: Callable[[], None], count: int) -> list[float]:
    """Seconds taken by each of ``count`` calls of ``step``."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def measure(subject: Subject, steps: int) -> tuple[list[float], list[float]]:
    """``steps`` timed training steps, then ``steps`` timed eval forwards."""
    subject.module.train()
    train_times = timed(subject.train_step, steps)
    subject.module.eval()
    subject.eval_step()  # untimed: recompute the eval-mode kernel cache after the optimizer steps
    return train_times, timed(subject.eval_step, steps)


def benchmark_shape(shape: Shape, kinds: list[str], batch: int, steps: int, rounds: int) -> Row:
    """Warm every subject up, then time them in interleaved rounds (order rotated each round)."""
    subjects = make_subjects(shape, kinds, batch)
    for subject in subjects:
        measure(subject, WARMUP_STEPS)
    for index in range(rounds):
        shift = index % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            train_times, eval_times = measure(subject, steps)
            subject.train_times += train_times
            subject.eval_times += eval_times
    medians = {s.name: (median_ms(s.train_times), median_ms(s.eval_times)) for s in subjects}
    plain_train, plain_eval = medians.pop(BASELINE)
    results = {
        kind: KindResult(train, evaluation, train / plain_train, evaluation / plain_eval)
        for kind, (train, evaluation) in medians.items()
    }
    return Row(shape, plain_train, plain_eval, results)


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def markdown_table(rows: list[Row], kinds: list[str]) -> str:
    header = ["shape", f"{BASELINE} train (ms)", f"{BASELINE} eval (ms)"]
    header += [f"{kind} {phase}" for kind in kinds for phase in ("train", "eval")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        label = row.shape.label + (" ★" if row.shape.headline else "")
        cells = [label, f"{row.plain_train_ms:.2f}", f"{row.plain_eval_ms:.2f}"]
        for kind in kinds:
            result = row.kinds[kind]
            cells += [f"{result.train_ratio:.2f}×", f"{result.eval_ratio:.2f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nRatios are median time / median {BASELINE} time; ★ marks the README headline shapes.")
    return "\n".join(lines)


def target_lines(rows: list[Row]) -> list[str]:
    """PASS/FAIL of the README's BCOP speed targets at each headline shape (informational)."""
    headline = [row for row in rows if row.shape.headline and "bcop" in row.kinds]
    if not headline:
        return ["Targets: not checked (needs kind bcop at the headline shapes)."]
    lines = ["Targets (informational):"]
    for row in headline:
        result = row.kinds["bcop"]
        checks = (("train", result.train_ratio, TRAIN_TARGET), ("eval", result.eval_ratio, EVAL_TARGET))
        for phase, ratio, limit in checks:
            verdict = "PASS" if ratio <= limit else "FAIL"
            lines.append(f"- BCOP {phase} ≤ {limit}× at {row.shape.label}: {ratio:.2f}× {verdict}")
    return lines


def keep_freed_memory() -> bool:
    """Stop glibc's malloc from handing freed memory back to the OS; False where that is not glibc.

    Otherwise large activations are unmapped when freed and page-faulted in afresh by the next
    step, depending on the heap's layout: a random ~3 µs per 4 KiB page that made single steps up
    to 4× slower and swamped the differences between kinds.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where available, else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def metadata(args: argparse.Namespace, malloc_tuned: bool, load_before: float) -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "malloc_keeps_freed_memory": malloc_tuned,
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "batch": args.batch,
        "steps": args.steps,
        "rounds": args.rounds,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
    }


def parse_kinds(text: str, parser: argparse.ArgumentParser) -> list[str]:
    kinds = list(dict.fromkeys(kind.strip() for kind in text.split(",") if kind.strip()))
    unknown = [kind for kind in kinds if kind not in CONV_KINDS]
    if unknown or not kinds:
        parser.error(f"--kinds: unknown or empty {unknown or text!r}; choose from {','.join(CONV_KINDS)}")
    return kinds


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per kind and round (default 10)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--kinds", default=",".join(CONV_KINDS), help="comma list of conv kinds (default all)")
    parser.add_argument("--shapes", choices=("headline", "all"), default="all", help="which shapes (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"JSON output (default {DEFAULT_JSON})")
    parser.add_argument("--quick", action="store_true", help="smoke test: batch 8, steps 2, rounds 2 (overrides them)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds = 8, 2, 2
    for name in ("batch", "steps", "rounds", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive integer; got {value}")
    return args, parse_kinds(args.kinds, parser)


def main(argv: list[str] | None = None) -> None:
    args, kinds = parse_args(argv)
    malloc_tuned = keep_freed_memory()
    load_before = os.getloadavg()[0]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shapes = [shape for shape in SHAPES if args.shapes == "all" or shape.headline]
    rows = []
    for shape in shapes:
        print(f"benchmarking {shape.label} ...", file=sys.stderr, flush=True)
        rows.append(benchmark_shape(shape, kinds, args.batch, args.steps, args.rounds))
    print(markdown_table(rows, kinds))
    print("\n".join(["", *target_lines(rows)]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": metadata(args, malloc_tuned, load_before), "rows": [row.to_json() for row in rows]}
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nWrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Speed of every Lipschitz convolution kind relative to a plain circular ``nn.Conv2d``.

For each conv kind of :data:`lipnb.layers.CONV_KINDS` and each conv shape of the BCOP paper's
Small and Large networks (MNIST 1×28×28 and CIFAR-10 3×32×32 inputs), this measures the median
time of

* a **training step**: ``zero_grad`` + forward + backward of ``out.square().mean()`` + Adam step;
* an **eval forward**: ``model.eval()`` under ``torch.no_grad()`` (the kernel is cached),

each reported as a ratio to ``nn.Conv2d(cin, cout, k, padding="same", padding_mode="circular")``
of the same shape, timed in the same process and the same interleaved rounds (the physical limit),
paired by round (:func:`timing.paired_ratio`).
Strided paper layers are invertible downsampling (pixel unshuffle) + a stride-1 conv; the
downsampling is the same permutation for every kind, so only the stride-1 conv is timed.
``--orthogonalizer`` times each named orthogonalizer as its own column (``bcop[bjorck]``) for the
kinds that take one (BCOP, RKO); without it the library default is used and no option is passed.

Run from the repository root (prints a Markdown table, writes ``benchmarks/results/layers.json``)::

    python benchmarks/layers.py
    python benchmarks/layers.py --shapes headline --kinds bcop,plain
    python benchmarks/layers.py --kinds bcop,rko --orthogonalizer cholesky,polar,bjorck
    python benchmarks/layers.py --quick    # smoke test: batch 8, 2 steps, 2 rounds, no warm-up

On a machine shared with other busy processes, add ``--threads 1``: a multi-threaded step waits
for its slowest thread, and a thread that has to share a core with another process is only
scheduled on timer ticks, which made 2-thread steps up to 8× slower and their ratios meaningless.
The process is an ordinary one, with no allocator or scheduler tuning: layers are timed as a user's
script runs them (see ``timing.py`` beside this file, shared with ``models.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn

from lipnb.layers import CONV_KINDS, layer_options, lipschitz_conv
from lipnb.models import RESIDUAL_BLOCK_KINDS
from lipnb.report import render_table
from timing import (
    WARMUP_STEPS,
    Subject,
    Variant,
    add_orthogonalizer_option,
    interleaved_rounds,
    metadata,
    paired_ratio,
    parse_choices,
    parse_orthogonalizers,
    require_positive_options,
    training_subject,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "layers.json"
BASELINE = "nn.Conv2d"
TRAIN_TARGET = 1.10  # target: BCOP training step ≤ 1.10× nn.Conv2d at the headline shapes
EVAL_TARGET = 1.02  # target: BCOP eval forward ≤ 1.02× nn.Conv2d at the headline shapes


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


@dataclass(frozen=True)
class KindResult:
    train_ms: float
    eval_ms: float
    train_ratio: float  # paired by round (timing.paired_ratio), with the lowest–highest round
    eval_ratio: float
    train_spread: str
    eval_spread: str


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


def mean_square(out: Tensor) -> Tensor:
    """The training loss of a lone layer: the mean square of its output."""
    return out.square().mean()


def applies(kind: str, shape: Shape) -> bool:
    """Whether ``kind`` has a layer of ``shape``: residual blocks (SLL) keep the width, so need ``cin == cout``."""
    return kind not in RESIDUAL_BLOCK_KINDS or shape.cin == shape.cout


def make_subjects(shape: Shape, variants: list[Variant], batch: int) -> list[Subject]:
    """The baseline and one layer per variant, all seeded alike and sharing one fixed input."""
    torch.manual_seed(0)
    x = torch.rand(batch, shape.cin, shape.size, shape.size)
    baseline = nn.Conv2d(shape.cin, shape.cout, shape.kernel, padding="same", padding_mode="circular")
    subjects = [training_subject(BASELINE, baseline, x, mean_square)]
    for variant in variants:
        if not applies(variant.kind, shape):
            continue
        layer = lipschitz_conv(variant.kind, shape.cin, shape.cout, shape.kernel, **variant.options)
        subjects.append(training_subject(variant.label, layer, x, mean_square))
    return subjects


def benchmark_shape(shape: Shape, variants: list[Variant], batch: int, steps: int, rounds: int, warmup: int) -> Row:
    """The median times of the baseline and every variant, timed in the same interleaved rounds."""
    baseline, *subjects = make_subjects(shape, variants, batch)
    interleaved_rounds([baseline, *subjects], steps, rounds, warmup)
    results = {}
    for subject in subjects:
        train, evaluation = paired_ratio(subject, baseline), paired_ratio(subject, baseline, "eval")
        results[subject.name] = KindResult(subject.train_ms, subject.eval_ms, train.median, evaluation.median,
                                           train.spread, evaluation.spread)
    return Row(shape, baseline.train_ms, baseline.eval_ms, results)


def make_variants(kinds: list[str], orthogonalizers: list[str | None]) -> list[Variant]:
    """One variant per kind and orthogonalizer; a single one for a kind that takes no orthogonalizer."""
    return [
        Variant(kind, orthogonalizer)
        for kind in kinds
        for orthogonalizer in (orthogonalizers if "orthogonalizer" in layer_options(CONV_KINDS[kind]) else [None])
    ]


def ratio_frame(rows: list[Row], variants: list[Variant]) -> pd.DataFrame:
    """One row per shape: the baseline's median times (ms), then each variant's train and eval ratios to them."""
    return pd.DataFrame(
        [
            {
                "shape": row.shape.label + (" ★" if row.shape.headline else ""),
                f"{BASELINE} train (ms)": row.plain_train_ms,
                f"{BASELINE} eval (ms)": row.plain_eval_ms,
                **{
                    f"{variant.label} {phase}": (
                        getattr(row.kinds[variant.label], f"{phase}_ratio") if variant.label in row.kinds else None
                    )
                    for variant in variants
                    for phase in ("train", "eval")
                },
            }
            for row in rows
        ]
    )


def markdown_table(rows: list[Row], variants: list[Variant]) -> str:
    """The ratio table in Markdown, with what its numbers are."""
    ratios = {f"{variant.label} {phase}": "{:.2f}×" for variant in variants for phase in ("train", "eval")}
    table = render_table(ratio_frame(rows, variants), percent=False, decimals=2, formats=ratios)
    note = (f"Ratios are paired by round: each round's median step over {BASELINE}'s in the same round, the "
            "median over rounds (the JSON has the lowest–highest round); ★ marks the README headline shapes.")
    return f"{table}\n\n{note}"


def target_lines(rows: list[Row], variants: list[Variant]) -> list[str]:
    """PASS/FAIL of the BCOP speed targets at each headline shape, per BCOP variant (informational)."""
    labels = [variant.label for variant in variants if variant.kind == "bcop"]
    headline = [row for row in rows if row.shape.headline]
    if not labels or not headline:
        return ["Targets: not checked (needs kind bcop at the headline shapes)."]
    lines = ["Targets (informational):"]
    for row in headline:
        for label in labels:
            result = row.kinds[label]
            checks = (("train", result.train_ratio, result.train_spread, TRAIN_TARGET),
                      ("eval", result.eval_ratio, result.eval_spread, EVAL_TARGET))
            for phase, ratio, spread, limit in checks:
                verdict = "PASS" if ratio <= limit else "FAIL"
                lines.append(f"- {label} {phase} ≤ {limit:.2f}× at {row.shape.label}: {ratio:.3f}× "
                             f"(rounds {spread}) {verdict}")
    return lines


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[Variant]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per kind and round (default 10)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--kinds", default=",".join(CONV_KINDS), help="comma list of conv kinds (default all)")
    add_orthogonalizer_option(parser)
    parser.add_argument("--shapes", choices=("headline", "all"), default="all", help="which shapes (default all)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"JSON output (default {DEFAULT_JSON})")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: batch 8, steps 2, rounds 2, no warm-up (overrides them)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds = 8, 2, 2
    require_positive_options(args, parser)
    kinds = parse_choices(args.kinds, CONV_KINDS, "--kinds", parser)
    return args, make_variants(kinds, parse_orthogonalizers(args.orthogonalizer, parser))


def main(argv: list[str] | None = None) -> None:
    args, variants = parse_args(argv)
    load_before = os.getloadavg()[0]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warmup = 0 if args.quick else WARMUP_STEPS
    shapes = [shape for shape in SHAPES if args.shapes == "all" or shape.headline]
    rows = []
    for shape in shapes:
        print(f"benchmarking {shape.label} ...", file=sys.stderr, flush=True)
        rows.append(benchmark_shape(shape, variants, args.batch, args.steps, args.rounds, warmup))
    print(markdown_table(rows, variants))
    print("\n".join(["", *target_lines(rows, variants)]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    labels = [variant.label for variant in variants]
    meta = metadata(load_before, batch=args.batch, steps=args.steps, rounds=args.rounds, variants=labels)
    report = {"meta": meta, "rows": [row.to_json() for row in rows]}
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nWrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Speed and memory of whole networks: every Lipschitz variant of Small, Large and FC-3 against plain.

For each network of :func:`lipnb.models.build_model` on MNIST inputs (1×28×28, 10 classes,
MaxMin) and each constrained conv kind, this measures, against the plain network of the same arch
(``conv="plain"``: plain convs and ``nn.Linear``), timed in the same process and the same
interleaved rounds (order rotated each round; times are medians, ratios paired by round:
:func:`timing.paired_ratio`):

* a **training step**: ``zero_grad`` + forward + multi-class hinge loss (MNIST margin) + backward
  + Adam step (lr 1e-3), as a ratio to plain;
* an **eval forward**: ``model.eval()`` under ``torch.no_grad()`` (weights cached), as a ratio;
* the **peak memory of a training step**: a child process per network builds it, runs a few
  training steps and reports its high-water RSS minus its RSS before the first step, once torch,
  the model and the batch exist (so torch's allocations in the steps count); in MiB and as a ratio
  to plain;
* the **all-reduced gradient bytes** per step under ``torch.distributed`` (DDP sums the gradient of
  every trainable parameter over the processes), in MiB and as a ratio to plain;
* two **floors** of each arch, on a near-orthogonal matrix of each linear weight shape
  ``(out, in)`` of the network, in ms and as a ratio to the plain network's training step: one
  explicit :func:`lipnb.orthogonal.cholesky_qr` forward + backward (the Cholesky-QR floor), and
  the narrow side's Gram matrix forward + backward (the Gram floor: the O(mn²) work per step that
  no exact orthonormalization of an updated weight avoids; a training Björck linear layer does
  this, an n×n Cholesky factor and small products, :func:`lipnb.orthogonal.cholesky_qr_linear`);
* with ``--epoch``, a full MNIST training epoch of Small (60,000 images) per kind against plain,
  in seconds, and the share of it spent getting batches from the loader (one epoch each, in a
  process warmed up first by a few steps of every network).

FC-3 has no convs, so every constrained kind gives the same network (Björck linear layers): it is
timed once, labelled ``BjorckLinear`` (built with ``conv="bcop"``). ``--orthogonalizer
cholesky,bjorck`` times each orthogonalizer as its own network (``bcop[cholesky]``,
``bcop[bjorck]``); without it the library default is used and no option is passed. SVCM's
projection every 100 steps is not part of a step; the epoch projects as :func:`lipnb.engine.fit`.

Run from the repository root (prints Markdown tables, writes ``benchmarks/results/models.json``)::

    python benchmarks/models.py
    python benchmarks/models.py --epoch --data-root ../shared/data
    python benchmarks/models.py --archs small --kinds bcop,rko --orthogonalizer cholesky,bjorck
    python benchmarks/models.py --quick    # smoke test: batch 8, 1 step, 2 rounds, no warm-up, no epoch

The process is timed as a user's script runs: an ordinary one, no allocator or scheduler tuning,
torch's default thread count unless ``--threads`` is given (on a machine shared with busy
processes, see ``layers.py`` on ``--threads 1``).

Peak memory is Linux only: the child lowers its high-water mark to its RSS just before the first
step (``/proc/self/clear_refs``) and reads ``VmHWM`` and ``VmRSS`` from ``/proc/self/status``. Not
``ru_maxrss``: Linux carries a parent's high-water mark over fork and exec into the child's
``ru_maxrss``, so every child reported the parent's peak. Memory that the setup freed and the
allocator kept is reused by the steps without raising the RSS, as in any process.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from lipnb.data import DatasetNotFoundError, TensorImages, load_dataset
from lipnb.layers import CONV_KINDS, BjorckLinear
from lipnb.models import ARCHITECTURES, RESIDUAL_BLOCK_KINDS, build_model
from lipnb.orthogonal import cholesky_qr
from lipnb.report import CellFormat, render_table
from lipnb.engine import SVCM_EVERY, project_svcm
from lipnb.losses import MNIST_MARGIN, multiclass_hinge_loss
from lipnb.train import epoch_loader
from timing import (
    LEARNING_RATE,
    WARMUP_STEPS,
    Subject,
    Variant,
    add_orthogonalizer_option,
    interleaved_rounds,
    measure,
    metadata,
    paired_ratio,
    parse_choices,
    parse_orthogonalizers,
    require_positive_options,
    training_subject,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "models.json"
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
BASELINE = "plain"
CONSTRAINED_KINDS = tuple(kind for kind in CONV_KINDS if kind != BASELINE)
FC3_KIND = "bcop"  # FC-3 has no convs: every kind but plain builds the same Björck linear network
FC3_LABEL = "BjorckLinear"
MEMORY_STEPS = 3  # training steps of a peak-memory child (the first one allocates Adam's state)
NEAR_ORTHOGONAL_NOISE = 0.01  # floor matrices: orthogonal + noise of about this spectral norm
EPOCH_ARCH = "small"
EPOCH_SEED = 0
LIBRARY_DEFAULT = "-"  # the orthogonalizer argument of a peak-memory child that passes no option
KIB_PER_MIB = 1024
RATIO = "{:.2f}×"
# The columns of the printed tables: JSON key -> (label, cell format).
NETWORK_COLUMNS: dict[str, tuple[str, CellFormat | None]] = {
    "arch": ("arch", None),
    "network": ("network", None),
    "train_ms": ("train (ms)", "{:.2f}"),
    "train_ratio": ("train ×plain", RATIO),
    "train_spread": ("rounds", None),
    "eval_ms": ("eval (ms)", "{:.2f}"),
    "eval_ratio": ("eval ×plain", RATIO),
    "eval_spread": ("rounds", None),
    "peak_step_mib": ("step peak (MiB)", "{:.1f}"),
    "peak_ratio": ("peak ×plain", RATIO),
    "gradient_mib": ("all-reduce (MiB)", "{:.2f}"),
    "gradient_ratio": ("×plain", RATIO),
}
FLOOR_COLUMNS: dict[str, tuple[str, CellFormat | None]] = {
    "arch": ("arch", None),
    "ms": ("Cholesky-QR floor (ms)", "{:.2f}"),
    "ratio": ("× plain train step", RATIO),
    "gram_ms": ("Gram floor (ms)", "{:.2f}"),
    "gram_ratio": ("× plain train step", RATIO),
    "weights": ("linear weights (out×in)", lambda weights: ", ".join(f"{o}×{i}" for o, i in weights)),
}
EPOCH_COLUMNS: dict[str, tuple[str, CellFormat | None]] = {
    "network": ("Small network", None),
    "seconds": ("epoch (s)", "{:.1f}"),
    "ratio": ("× plain", RATIO),
    "data_share": ("data loading", "{:.1%}"),
}


@dataclass(frozen=True)
class Network:
    """One network to time: ``arch`` built with ``variant`` (``Variant("plain")``: the baseline)."""

    arch: str
    variant: Variant

    @property
    def label(self) -> str:
        if self.arch != "fc3" or self.variant.kind == BASELINE:
            return self.variant.label
        orthogonalizer = self.variant.orthogonalizer
        return FC3_LABEL if orthogonalizer is None else f"{FC3_LABEL}[{orthogonalizer}]"

    def build(self) -> nn.Sequential:
        """The network, seeded alike for every variant (MaxMin; ReLU inside the residual blocks)."""
        torch.manual_seed(0)
        options = self.variant.options or None
        activation = "relu" if self.arch == "residual" else "maxmin"
        return build_model(
            self.arch, self.variant.kind, activation, INPUT_SHAPE, NUM_CLASSES, layer_options=options
        )


@dataclass(frozen=True)
class PeakMemory:
    """RSS of a peak-memory child in MiB: before the first training step, and its high-water mark after them."""

    rss_before: float
    peak: float

    @property
    def step(self) -> float:
        """The memory the training steps added: the high-water RSS minus the RSS before the first step."""
        return self.peak - self.rss_before


@dataclass(frozen=True)
class Epoch:
    """One MNIST training epoch: total seconds, seconds spent getting batches, and steps."""

    seconds: float
    data_seconds: float
    steps: int


def networks(arch: str, variants: list[Variant]) -> list[Network]:
    """The plain baseline of ``arch``, then its constrained networks (FC-3: one per orthogonalizer).

    ``residual`` is built by the kinds of residual blocks only (SLL), the other archs by the rest.
    """
    variants = [variant for variant in variants if (variant.kind in RESIDUAL_BLOCK_KINDS) == (arch == "residual")]
    if not variants:
        return []
    if arch == "fc3":
        variants = list(dict.fromkeys(Variant(FC3_KIND, variant.orthogonalizer) for variant in variants))
    return [Network(arch, Variant(BASELINE)), *(Network(arch, variant) for variant in variants)]


def batch_data(batch: int) -> tuple[Tensor, Tensor]:
    """A fixed random MNIST-shaped batch and its labels."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, *INPUT_SHAPE, generator=generator)
    return x, torch.randint(NUM_CLASSES, (batch,), generator=generator)


def hinge_subject(network: Network, x: Tensor, y: Tensor) -> Subject:
    """The network with its training step (hinge loss, Adam) and eval forward on the batch ``x, y``."""
    return training_subject(
        network.label, network.build(), x, lambda logits: multiclass_hinge_loss(logits, y, MNIST_MARGIN)
    )


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """The ``(out, in)`` weight shape of each Björck linear layer of ``model``."""
    return [(m.out_features, m.in_features) for m in model.modules() if isinstance(m, BjorckLinear)]


def near_orthogonal(shape: tuple[int, int]) -> Tensor:
    """An orthogonal matrix of ``shape`` plus noise of spectral norm about :data:`NEAR_ORTHOGONAL_NOISE`."""
    noise = torch.randn(shape) * NEAR_ORTHOGONAL_NOISE / (2 * math.sqrt(max(shape)))
    return nn.init.orthogonal_(torch.empty(shape)) + noise


def narrow_gram(weight: Tensor) -> Tensor:
    """``WWᵀ`` for a wide ``W``, ``WᵀW`` otherwise: the Gram matrix of the narrow side."""
    return weight @ weight.mT if weight.shape[0] < weight.shape[1] else weight.mT @ weight


FLOOR_MAPS = {"Cholesky-QR floor": cholesky_qr, "Gram floor": narrow_gram}


def floor_subject(shapes: list[tuple[int, int]], name: str) -> Subject:
    """One forward + backward of ``FLOOR_MAPS[name]`` on a near-orthogonal matrix of each shape, as a training step."""
    torch.manual_seed(0)
    weights = nn.ParameterList(nn.Parameter(near_orthogonal(shape)) for shape in shapes)
    grads = [torch.randn_like(FLOOR_MAPS[name](weight)) for weight in weights]

    def step() -> None:
        for weight, grad in zip(weights, grads, strict=True):
            torch.autograd.grad(FLOOR_MAPS[name](weight), weight, grad)

    return Subject(name, weights, step, None)


def benchmark_arch(
    arch: str, variants: list[Variant], batch: int, steps: int, rounds: int, warmup: int
) -> tuple[dict[Network, Subject], dict[str, Subject]]:
    """The timed networks of ``arch`` and its floors (by name), all in the same interleaved rounds."""
    x, y = batch_data(batch)
    baseline, *constrained = networks(arch, variants)
    subjects = {network: hinge_subject(network, x, y) for network in (baseline, *constrained)}
    shapes = linear_shapes(subjects[constrained[0]].module)
    floors = {name: floor_subject(shapes, name) for name in FLOOR_MAPS}
    interleaved_rounds([*subjects.values(), *floors.values()], steps, rounds, warmup)
    return subjects, floors


def rss_kib(field: str) -> int:
    """``VmRSS`` (resident set size now) or ``VmHWM`` (its high-water mark) of this process, in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: peak memory needs Linux")


def reset_peak_rss() -> None:
    """Lower this process's RSS high-water mark (``VmHWM``) to its RSS now (Linux ≥ 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_memory_child(arch: str, kind: str, orthogonalizer: str, batch: int, steps: int) -> None:
    """Child mode: build the network, run ``steps`` training steps, print its RSS before them and peak (KiB)."""
    variant = Variant(kind, None if orthogonalizer == LIBRARY_DEFAULT else orthogonalizer)
    subject = hinge_subject(Network(arch, variant), *batch_data(batch))
    subject.module.train()
    gc.collect()
    reset_peak_rss()
    rss_before = rss_kib("VmRSS")
    for _ in range(steps):
        subject.train_step()
    print(json.dumps({"rss_before": rss_before, "peak": rss_kib("VmHWM")}))


def measure_peak_memory(network: Network, args: argparse.Namespace) -> PeakMemory:
    """Run this script in peak-memory child mode for ``network`` and read its report."""
    orthogonalizer = network.variant.orthogonalizer or LIBRARY_DEFAULT
    command = [sys.executable, str(Path(__file__).resolve()), "--peak-memory-child", network.arch]
    command += [network.variant.kind, orthogonalizer, "--batch", str(args.batch)]
    command += ["--threads", str(args.threads)] if args.threads is not None else []
    command += ["--quick"] if args.quick else []
    child = subprocess.run(command, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"peak-memory child for {network.arch} {network.label} failed:\n{child.stderr}")
    report = json.loads(child.stdout.strip().splitlines()[-1])
    return PeakMemory(*(report[key] / KIB_PER_MIB for key in ("rss_before", "peak")))


def load_mnist(root: str | None) -> TensorImages:
    """The MNIST training set; exits with one line if it is missing."""
    try:
        return load_dataset("mnist", root)
    except DatasetNotFoundError as error:
        raise SystemExit(f"models.py --epoch needs MNIST (--data-root, else $LIPNB_DATA): {error}") from None


def warm_up_epochs(epoch_networks: list[Network], dataset: TensorImages, batch: int) -> None:
    """Untimed steps of each network on a first batch, so no timed epoch pays the process's first-call costs."""
    x, y = next(iter(epoch_loader(dataset, batch, EPOCH_SEED, 0)))
    for network in epoch_networks:
        measure(hinge_subject(network, x, y), WARMUP_STEPS)


def train_epoch(model: nn.Module, dataset: TensorImages, batch: int) -> Epoch:
    """One training epoch as :func:`lipnb.engine.fit` runs it, timing the loader separately."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loader = epoch_loader(dataset, batch, EPOCH_SEED, 0)
    model.train()
    data_seconds = 0.0
    start = time.perf_counter()
    batches = iter(loader)
    for step in range(1, len(loader) + 1):
        fetch = time.perf_counter()
        x, y = next(batches)
        data_seconds += time.perf_counter() - fetch
        optimizer.zero_grad()
        multiclass_hinge_loss(model(x), y, MNIST_MARGIN).backward()
        optimizer.step()
        if step % SVCM_EVERY == 0:
            project_svcm([model])
    project_svcm([model])
    return Epoch(time.perf_counter() - start, data_seconds, len(loader))


def memory_ratio(value: float, baseline: float) -> float | None:
    """``value / baseline``; None when the plain network's steps added no memory to compare with."""
    return value / baseline if baseline > 0 else None


def network_rows(timings: dict[Network, Subject], memory: dict[Network, PeakMemory]) -> list[dict[str, Any]]:
    """One JSON row per network: its times and peak memory, and their ratios to the plain network of its arch."""
    rows = []
    for network, subject in timings.items():
        plain = Network(network.arch, Variant(BASELINE))
        plain_subject, plain_memory, peak = timings[plain], memory[plain], memory[network]
        gradient_mib, plain_gradient_mib = gradient_mebibytes(network), gradient_mebibytes(plain)
        train, evaluation = paired_ratio(subject, plain_subject), paired_ratio(subject, plain_subject, "eval")
        rows.append(
            {
                "arch": network.arch,
                "network": network.label,
                "conv": network.variant.kind,
                "orthogonalizer": network.variant.orthogonalizer,
                "train_ms": subject.train_ms,
                "eval_ms": subject.eval_ms,
                "train_ratio": train.median,
                "train_spread": train.spread,
                "train_ratio_of_medians": subject.train_ms / plain_subject.train_ms,
                "eval_ratio": evaluation.median,
                "eval_spread": evaluation.spread,
                "eval_ratio_of_medians": subject.eval_ms / plain_subject.eval_ms,
                "peak_step_mib": peak.step,
                "peak_ratio": memory_ratio(peak.step, plain_memory.step),
                "rss_before_mib": peak.rss_before,
                "peak_mib": peak.peak,
                "gradient_mib": gradient_mib,
                "gradient_ratio": gradient_mib / plain_gradient_mib,
            }
        )
    return rows


def gradient_mebibytes(network: Network) -> float:
    """The gradient bytes that DistributedDataParallel all-reduces every step: all trainable parameters, float32."""
    return sum(p.numel() * p.element_size() for p in network.build().parameters() if p.requires_grad) / 2**20


def floor_rows(floors: dict[str, dict[str, Subject]], timings: dict[Network, Subject]) -> list[dict[str, Any]]:
    """One JSON row per arch: its Cholesky-QR and Gram floors in ms and as ratios to the plain training step."""
    rows = []
    for arch, subjects in floors.items():
        plain = timings[Network(arch, Variant(BASELINE))]
        cholesky, gram = subjects["Cholesky-QR floor"], subjects["Gram floor"]
        weights = [list(weight.shape) for weight in cholesky.module.parameters()]
        rows.append({"arch": arch, "weights": weights,
                     "ms": cholesky.train_ms, "ratio": paired_ratio(cholesky, plain).median,
                     "gram_ms": gram.train_ms, "gram_ratio": paired_ratio(gram, plain).median})
    return rows


def epoch_rows(epochs: dict[Network, Epoch]) -> list[dict[str, Any]]:
    """One JSON row per Small network: epoch seconds, ratio to plain, and the data-loading share."""
    plain = epochs[Network(EPOCH_ARCH, Variant(BASELINE))]
    return [
        {
            "network": network.label,
            "conv": network.variant.kind,
            "orthogonalizer": network.variant.orthogonalizer,
            "seconds": epoch.seconds,
            "ratio": epoch.seconds / plain.seconds,
            "data_seconds": epoch.data_seconds,
            "data_share": epoch.data_seconds / epoch.seconds,
            "steps": epoch.steps,
        }
        for network, epoch in epochs.items()
    ]


def markdown(rows: list[dict[str, Any]], columns: dict[str, tuple[str, CellFormat | None]]) -> str:
    """JSON rows as a Markdown table: ``columns`` maps the keys shown to their label and cell format."""
    frame = pd.DataFrame(rows, columns=list(columns))
    formats = {key: cell for key, (_, cell) in columns.items() if cell is not None}
    labels = {key: label for key, (label, _) in columns.items()}
    return render_table(frame, percent=False, formats=formats, labels=labels)


def report_text(report: dict[str, Any]) -> str:
    """The Markdown tables of a report, with what their numbers are."""
    meta = report["meta"]
    parts = [
        markdown(report["networks"], NETWORK_COLUMNS),
        "\nRatios are paired by round: each round's median step over the plain network's in the same round "
        "(same arch), the median over rounds; rounds: the lowest and highest round, the noise of the machine "
        "(eval computes what plain does). Step peak: high-water RSS of a child process over "
        f"{meta['memory_steps']} training step(s) minus its RSS before the first one. All-reduce: the "
        "gradient bytes DDP sums over processes every step (every trainable parameter, float32). FC-3 has no "
        f"convs: {FC3_LABEL} is its network for every constrained kind.\n",
        markdown(report["floor"], FLOOR_COLUMNS),
        "\nCholesky-QR floor: one explicit Cholesky-QR orthonormalization forward + backward of each linear "
        "weight. Gram floor: the Gram matrix of each weight's narrow side forward + backward, the O(mn²) work "
        "per step that no exact orthonormalization of an updated weight avoids (a Björck linear layer in "
        "training applies its Cholesky factor without forming the weight: the Gram floor, an n×n Cholesky "
        "factor and small products).",
    ]
    if report["epoch"] is not None:
        note = "\nOne MNIST training epoch (60,000 images); data loading: time spent getting batches."
        parts += ["", markdown(report["epoch"], EPOCH_COLUMNS), note]
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str], list[Variant]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma list of archs (default all)")
    parser.add_argument(
        "--kinds",
        default=",".join(CONSTRAINED_KINDS),
        help="comma list of constrained conv kinds (default all; plain is always the baseline)",
    )
    add_orthogonalizer_option(parser)
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per network and round (default 10)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--epoch", action="store_true", help="also time a full MNIST training epoch of Small")
    parser.add_argument("--data-root", default=None, help="MNIST data root (default $LIPNB_DATA, else ~/.cache/lipnb)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"JSON output (default {DEFAULT_JSON})")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: batch 8, steps 1, rounds 2, no warm-up, no epoch (overrides them)",
    )
    parser.add_argument("--peak-memory-child", nargs=3, metavar=("ARCH", "KIND", "ORTH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        if args.epoch:
            parser.error("--epoch is a full MNIST epoch: it cannot be combined with --quick")
        args.batch, args.steps, args.rounds = 8, 1, 2
    require_positive_options(args, parser)
    archs = parse_choices(args.archs, ARCHITECTURES, "--archs", parser)
    kinds = [kind for kind in parse_choices(args.kinds, CONV_KINDS, "--kinds", parser) if kind != BASELINE]
    if not kinds:
        parser.error(f"--kinds needs a constrained kind ({','.join(CONSTRAINED_KINDS)}); plain is always the baseline")
    orthogonalizers = parse_orthogonalizers(args.orthogonalizer, parser)
    return args, archs, [Variant(kind, orthogonalizer) for kind in kinds for orthogonalizer in orthogonalizers]


def main(argv: list[str] | None = None) -> None:
    args, archs, variants = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    memory_steps, warmup = (1, 0) if args.quick else (MEMORY_STEPS, WARMUP_STEPS)
    if args.peak_memory_child is not None:
        peak_memory_child(*args.peak_memory_child, args.batch, memory_steps)
        return
    load_before = os.getloadavg()[0]
    mnist = load_mnist(args.data_root) if args.epoch else None  # fail before the long timing if it is missing
    timings: dict[Network, Subject] = {}
    floors: dict[str, dict[str, Subject]] = {}
    for arch in archs:
        if not networks(arch, variants):
            continue  # no kind asked for builds this arch
        print(f"timing {arch} ...", file=sys.stderr, flush=True)
        subjects, floors[arch] = benchmark_arch(arch, variants, args.batch, args.steps, args.rounds, warmup)
        timings.update(subjects)
    memory: dict[Network, PeakMemory] = {}
    for network in timings:
        print(f"peak memory of {network.arch} {network.label} ...", file=sys.stderr, flush=True)
        memory[network] = measure_peak_memory(network, args)
    epochs: dict[Network, Epoch] = {}
    if mnist is not None:
        warm_up_epochs(networks(EPOCH_ARCH, variants), mnist, args.batch)
        for network in networks(EPOCH_ARCH, variants):
            print(f"MNIST epoch of {EPOCH_ARCH} {network.label} ...", file=sys.stderr, flush=True)
            epochs[network] = train_epoch(network.build(), mnist, args.batch)
    meta = metadata(
        load_before,
        batch=args.batch,
        steps=args.steps,
        rounds=args.rounds,
        memory_steps=memory_steps,
        archs=archs,
        variants=[variant.label for variant in variants],
    )
    report = {
        "meta": meta,
        "networks": network_rows(timings, memory),
        "floor": floor_rows(floors, timings),
        "epoch": epoch_rows(epochs) if epochs else None,
    }
    print(report_text(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nWrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()

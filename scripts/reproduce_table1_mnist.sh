#!/usr/bin/env bash
# Table 1, MNIST Small (ε = 1.58): each conv kind through the robustness notebook, then the table.
#   LIPNB_DATA=../shared/data EPOCHS=15 bash scripts/reproduce_table1_mnist.sh [conv ...]
# Paper schedule on a GPU: EPOCHS=200 DEVICE=cuda. Interrupted runs resume from their checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
data_root=${LIPNB_DATA:-../shared/data}
epochs=${EPOCHS:-15}
device=${DEVICE:-auto}
arch=${ARCH:-small}
convs=("$@")
[ ${#convs[@]} -gt 0 ] || convs=(bcop rko ossn svcm plain)
mkdir -p runs
for conv in "${convs[@]}"; do
  papermill notebooks/robustness.ipynb "runs/robustness_mnist_${arch}_${conv}.ipynb" \
    -p conv "$conv" -p dataset mnist -p arch "$arch" -p epochs "$epochs" -p device "$device" \
    -p data_root "$data_root" -p out_dir "results/robustness/mnist_${arch}_${conv}_seed0"
done
python -m lipnb.report results/robustness --compare

#!/usr/bin/env bash
# Table 4 on MNIST and Fashion-MNIST: BCOP/RKO/OSSN × MaxMin/ReLU critics through the Wasserstein
# notebook, each against one frozen WGAN-GP generator per dataset, then the table.
#   LIPNB_DATA=../shared/data GAN_EPOCHS=5 CRITIC_STEPS=2000 bash scripts/reproduce_table4_mnist.sh [dataset ...]
# Longer schedule on a GPU: GAN_EPOCHS=50 CRITIC_STEPS=20000 DEVICE=cuda. Interrupted runs resume
# from their checkpoints (generators in runs/wasserstein/generators, critics in each out_dir).
set -euo pipefail
cd "$(dirname "$0")/.."
data_root=${LIPNB_DATA:-../shared/data}
gan_epochs=${GAN_EPOCHS:-5}
critic_steps=${CRITIC_STEPS:-2000}
device=${DEVICE:-auto}
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(mnist fashion-mnist)
mkdir -p runs
for dataset in "${datasets[@]}"; do
  for conv in bcop rko ossn; do
    for activation in maxmin relu; do
      papermill notebooks/wasserstein.ipynb "runs/wasserstein_${dataset}_${conv}_${activation}.ipynb" \
        -p dataset "$dataset" -p conv "$conv" -p activation "$activation" -p gan_epochs "$gan_epochs" \
        -p critic_steps "$critic_steps" -p device "$device" -p data_root "$data_root" \
        -p checkpoint_dir runs/wasserstein/generators \
        -p out_dir "results/wasserstein/${dataset}_${conv}_${activation}_seed0"
    done
  done
done
python -m lipnb.report results/wasserstein --wasserstein

#!/bin/bash
# issue 27's transfer measurement: pretrain on classes 0-4, then per seed: finetune with --lr find vs scratch
set -e
export PYTHONPATH=/work/wt-h27/src OMP_NUM_THREADS=1
R="/work/main/.venv/bin/python -m reslab"
D=/usr/share/datasets/fashion-mnist
[ -f runs/pretrain-0-4/model.safetensors ] || $R train --data-dir $D --model resnet20 --subset-classes 0-4 --epochs 14 --quiet --overwrite --out runs/pretrain-0-4
for seed in 0 1 2; do
  [ -f runs/finetune-find-$seed/model.safetensors ] || $R train --data-dir $D --init runs/pretrain-0-4 --recipe finetune --lr find --subset-classes 5-9 --per-class 100 \
      --batch-size 50 --epochs 30 --seed $seed --quiet --overwrite --out runs/finetune-find-$seed
  [ -f runs/scratch-$seed/model.safetensors ] || $R train --data-dir $D --model resnet20 --subset-classes 5-9 --per-class 100 \
      --batch-size 50 --epochs 30 --seed $seed --quiet --overwrite --out runs/scratch-$seed
done
echo ALL DONE

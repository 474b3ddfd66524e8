"""int8 (onnxruntime and torchao) and bf16 (eager and compiled) vs fp32 top-1 on the Fashion-MNIST test set,
for a trained reslab run.

Usage: .venv/bin/python scripts/int8_accuracy.py RUN_DIR   (calibrates on 256 training images)
"""
import sys
import time

import torch

from reslab.data import load_dataset, normalize
from reslab.deploy.fast import build_engine
from reslab.hardware import native_bf16_cpu
from reslab.weights import load_weights

torch.manual_seed(0)
model, meta = load_weights(sys.argv[1])
pre = meta["preprocess"]
def norm(x):
    return normalize(x, mode=pre["mode"], std=pre["std"], mean=pre.get("mean"), pixel_mean=pre.get("mean_image"))
test = load_dataset("fashion-mnist", "test")
calib_src = load_dataset("fashion-mnist", "train")
calib = norm(calib_src.images[torch.randperm(len(calib_src))[:256]])
x_all = norm(test.images)
res = {}
paths = ("eager", "onnxruntime", "int8-ort", "int8-torchao") + (("bf16", "bf16-compiled") if native_bf16_cpu() else ())
for path in paths:
    eng = build_engine(model, path, x_all[:500], calib=calib if path.startswith("int8") else None)
    t = time.perf_counter()
    preds = []
    for i in range(0, len(x_all), 500):
        preds.append(eng(x_all[i:i+500]).argmax(1))
    pred = torch.cat(preds)
    res[path] = (pred == test.labels).float().mean().item()
    print(f"{path:12s} top-1 {100*res[path]:.2f}%  ({time.perf_counter()-t:.1f}s for 10k)", flush=True)
for path in paths[2:]:
    print(f"{path} - fp32(eager): {100*(res[path]-res['eager']):+.2f} points")

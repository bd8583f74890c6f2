#!/usr/bin/env python3
"""The memory-levers table of the README: peak memory and step time of MobileNetV2 and
ResNet-18 at 32x32 batch 32 and 224x224 batch 8 for the plain schedule, each lever alone and the
best combination, measured with `edgetrain bench` (each configuration in a fresh process), next
to PyTorch's numbers from shared/peers/torch_baseline.json (measured on this machine).

    python3 bench/levers.py [--edgetrain build/tools/edgetrain] [--steps 6] [--out FILE.json]

Standard library only; prints a Markdown table and writes JSON."""
import argparse
import datetime
import json
import os
import subprocess
import sys

# "plain" is the default schedule, which recomputes batch-norm outputs for backward (since
# 2026-12-07); "norm outputs kept" is the schedule without any memory lever.
LEVERS = [
    ("plain", []),
    ("norm outputs kept", ["--keep-norm-outputs"]),
    ("freeze first half", ["--freeze-layers", "HALF"]),
    ("micro-batches x4", ["--micro-batches", "4"]),
    ("checkpoint sqrt", ["--checkpoint", "sqrt"]),
    ("ReLU masks", ["--relu-masks"]),
    ("masks + sparse 0.6", ["--relu-masks", "--sparse-activations", "--capacity", "0.6"]),
    ("ckpt + masks + sparse", ["--checkpoint", "sqrt", "--relu-masks", "--sparse-activations", "--capacity", "0.6"]),
]
CONFIGS = [("mobilenet_v2", 32, 32, 52), ("resnet18", 32, 32, 21), ("mobilenet_v2", 224, 8, 52), ("resnet18", 224, 8, 21)]


def torch_numbers(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError:
        return {}
    out = {}
    for r in data.get("results", data if isinstance(data, list) else []):
        key = (r.get("model"), r.get("size"), r.get("batch"), r.get("variant"))
        out[key] = r
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edgetrain", default="build/tools/edgetrain")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default="bench/results/levers-latest.json")
    ap.add_argument("--torch", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers", "torch_baseline.json"))
    a = ap.parse_args()
    rows = []
    for model, size, batch, half in CONFIGS:
        for name, flags in LEVERS:
            flags = [str(half) if f == "HALF" else f for f in flags]
            if "--micro-batches" in flags and batch < 8:
                flags = [f if f != "4" else "2" for f in flags]
                name = "micro-batches x2"
            cmd = [a.edgetrain, "bench", "--model", model, "--input", str(size), "--batch", str(batch), "--steps",
                   str(a.steps), "--warmup", "2", "--json"] + flags
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(f"failed: {' '.join(cmd)}\n{p.stderr}", file=sys.stderr)
                continue
            j = json.loads(p.stdout)
            rows.append(dict(model=model, input=size, batch=batch, lever=name, step_ms=j["step_ms_median"],
                             peak_rss_mib=j["peak_rss_bytes"] / 2**20,
                             peak_rss_increase_mib=(j["peak_rss_bytes"] - j["rss_start_bytes"]) / 2**20,
                             planned_mib=j.get("memory", {}).get("total_bytes", 0) / 2**20))
            r = rows[-1]
            print(f"{model} {size} b{batch} {name}: {r['step_ms']:.1f} ms, peak RSS {r['peak_rss_mib']:.1f} MiB",
                  file=sys.stderr)
    torch = torch_numbers(a.torch)
    print("| model | input | batch | lever | step ms | peak RSS MiB | PyTorch step ms | PyTorch peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        variant = {"plain": "full", "checkpoint sqrt": "ckpt"}.get(r["lever"])
        t = torch.get((r["model"], r["input"], r["batch"], variant)) if variant else None
        ts = f"{t['step_median_s'] * 1e3:.0f}" if t and "step_median_s" in t else ""
        tr = f"{t['peak_rss_kib'] / 1024:.0f}" if t and "peak_rss_kib" in t else ""
        print(f"| {r['model']} | {r['input']} | {r['batch']} | {r['lever']} | {r['step_ms']:.1f} | "
              f"{r['peak_rss_mib']:.1f} | {ts} | {tr} |")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(dict(date=datetime.datetime.now().isoformat(timespec="seconds"), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()

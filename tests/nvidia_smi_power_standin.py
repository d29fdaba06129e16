#!/usr/bin/env python3
"""A stand-in for nvidia-smi's power-limit calls (no GPU here): every argv appended as a JSON line to
$NVIDIA_SMI_STANDIN/calls; `-i <n> -pl <W>` (or `-pl <W>`: every GPU) sets the limits kept in $NVIDIA_SMI_STANDIN/limits;
`--query-gpu=index,power.limit --format=csv,noheader,nounits` answers from them. $NVIDIA_SMI_STANDIN_GPUS GPUs (4),
each at $NVIDIA_SMI_STANDIN_DEFAULT_W (700) until set. $NVIDIA_SMI_STANDIN_REFUSE set: -pl is refused as on a GPU whose
limit cannot be changed; $NVIDIA_SMI_STANDIN_READS set: every GPU reads back that value whatever was set.
`--query-gpu=name,driver_version --format=csv,noheader` answers $NVIDIA_SMI_STANDIN_NAME (an H100) and
$NVIDIA_SMI_STANDIN_DRIVER (a 550 driver) for each GPU, as the health gate's gpu_count asks."""
import json
import os
import sys

state = os.environ["NVIDIA_SMI_STANDIN"]
argv = sys.argv[1:]
with open(os.path.join(state, "calls"), "a", encoding="utf-8") as handle:
    handle.write(json.dumps(argv) + "\n")
count = int(os.environ.get("NVIDIA_SMI_STANDIN_GPUS", "4"))
path = os.path.join(state, "limits")
limits = json.load(open(path)) if os.path.exists(path) else [float(os.environ.get("NVIDIA_SMI_STANDIN_DEFAULT_W", "700"))] * count
if "-pl" in argv:
    if os.environ.get("NVIDIA_SMI_STANDIN_REFUSE"):
        print("Changing power management limit is not supported for GPU: 00000000:1B:00.0.", file=sys.stderr)
        sys.exit(3)
    watts = float(argv[argv.index("-pl") + 1])
    for i in ([int(argv[argv.index("-i") + 1])] if "-i" in argv else range(count)):
        limits[i] = watts
    json.dump(limits, open(path, "w"))
    print(f"Power limit for GPU(s) was set to {watts:.2f} W.")
elif argv == ["--query-gpu=index,power.limit", "--format=csv,noheader,nounits"]:
    reads = os.environ.get("NVIDIA_SMI_STANDIN_READS")
    for i, watts in enumerate(limits):
        print(f"{i}, {float(reads) if reads else watts:.2f}")
elif argv == ["--query-gpu=name,driver_version", "--format=csv,noheader"]:
    for _ in limits:
        print(f"{os.environ.get('NVIDIA_SMI_STANDIN_NAME', 'NVIDIA H100 80GB HBM3')}, "
              f"{os.environ.get('NVIDIA_SMI_STANDIN_DRIVER', '550.163.01')}")
else:
    print(f"nvidia-smi stand-in: {argv} is not answered", file=sys.stderr)
    sys.exit(2)

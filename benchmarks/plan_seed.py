"""The seed model's pod plan: `plan` for each row of the README's pod table, printed as that table.

    python benchmarks/plan_seed.py [--rows N ...] [--only-print-commands]

Each row runs `vocal-remover-jax plan --json` in its own process (compiles do not share memory),
which compiles on tcmalloc where the machine has it (Debian: libtcmalloc-minimal4; `--malloc
glibc` to compare): XLA's compiler peaks lower and runs faster on it (README, "Checking a run fits").
The rows are the named pod configs (configs/pretrain.py:seed_v5p, ...): bf16, mesh and batch for
the slice, the compiler's lowest execution-time effort. Each compile took 11-15 minutes and up to
15 GiB on the project's 2-core, 24 GB machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (named config, topology): the config holds the mesh, batch, dtype and compiler effort
ROWS = [
    ("pretrain.py:seed_v5p", "v5p:4x4x4"),
    ("pretrain.py:seed_v5e", "v5e:16x16"),
    ("finetune.py:seed_v5p_slice", "v5p:2x2x1"),
]


def command(config: str, topology: str, malloc: str = "auto") -> list[str]:
    return [sys.executable, "-m", "vocal_remover_jax", "plan", "--config", os.path.join(ROOT, "configs", config),
            "--topology", topology, "--json", "--malloc", malloc]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="*", help="row indices to run (default: all)")
    p.add_argument("--only-print-commands", action="store_true")
    p.add_argument("--malloc", choices=("auto", "glibc"), default="auto",
                   help="passed to plan: auto compiles on tcmalloc when installed")
    args = p.parse_args()
    rows = [ROWS[i] for i in args.rows] if args.rows else ROWS
    if args.only_print_commands:
        for row in rows:
            print(" ".join(command(*row)[1:]))
        return
    print("| config | topology | mesh data x fsdp | global batch | dtype | GB per chip (HBM) | fits |"
          " cost-model step | est. MFU | est. examples/s/chip | compile: train + eval s | compile peak GB | malloc |"
          " StableHLO ops |")
    print("|" + " --- |" * 14)
    for config, topology in rows:
        done = subprocess.run(command(config, topology, args.malloc), capture_output=True, text=True)
        if done.returncode:
            print(f"| {config} | {topology} | failed: {done.stderr.strip().splitlines()[-1:]} |")
            continue
        r = json.loads(done.stdout)
        print(f"| {config} | {topology} | {r['mesh']['data']} x {r['mesh']['fsdp']} | {r['global_batch']} | "
              f"{r['compute_dtype']} | {r['per_chip_bytes']['total'] / 1e9:.1f} ({r['hbm_bytes'] / 1e9:.0f}) | "
              f"{r['fits']} | {(r['estimated_step_seconds'] or 0) * 1e3:.1f} ms | "
              f"{100 * (r['estimated_mfu'] or 0):.1f} % | {r['estimated_examples_per_second_per_chip'] or 0:.1f} | "
              f"{r['compile_seconds']:.0f} + {r['eval']['compile_seconds']:.0f} | "
              f"{r['compile_peak_rss_bytes'] / 1e9:.1f} | {r['allocator']} | {r['hlo_ops']:,} |", flush=True)


if __name__ == "__main__":
    main()

"""Where a train step's program size comes from: StableHLO ops, and compiled kernels, by module.

    python benchmarks/program_size.py --config configs/pretrain.py:tiny --topology v5p:2x2x1
    python benchmarks/program_size.py --config configs/pretrain.py:seed --topology v5p:4x4x4 \\
        --config.mesh.data=8 --config.mesh.fsdp=8 --config.batch_size=64 --no-compile

Lowers `build_program`'s train step for the topology's compile-only devices (as `plan` does),
counts the lowered operations by the Flax module that emitted them (digits folded, so every
level and block of one kind add up), then compiles and counts the kernels of the optimized
program (fusions, convolutions, custom calls) the same way: compile time and memory follow the
kernel count. On TPU it also sums the compiler's estimated cycles per instruction by module and
by kind, to show where the cost model's step time goes. Unlabelled entries are outside the model (optimizer, gradient norm, guard, loss).
"""

from __future__ import annotations

import argparse
import collections
import re
import time

from vocal_remover_jax.config import load_config
from vocal_remover_jax.train import mesh as mesh_lib
from vocal_remover_jax.train.chips import parse_topology
from vocal_remover_jax.train.plan import cost_analysis, count_ops, topology_devices
from vocal_remover_jax.train.program import build_program

_SKIP = ("jit(", "jvp(", "transpose(", "vmap(", "checkpoint", "remat", "cond", "branch_")


def module_of(name: str, depth: int) -> str:
    """The module path of a name stack (its last part is the primitive)."""
    parts = [p for p in re.sub(r"_\d+", "_N", name).split("/")[:-1] if p and not p.startswith(_SKIP)]
    return "/".join(parts[:depth]) or "(outside the model)"


def lowered_ops_by_module(text: str, depth: int) -> collections.Counter:
    """StableHLO ops of `lowered.as_text(debug_info=True)` by the name in their location."""
    locs = dict(re.findall(r"^(#loc\d+) = loc\((.*)\)$", text, re.M))

    def name(loc: str, hops: int = 0) -> str:
        body = locs.get(loc, "")
        quoted = re.match(r'"([^"]*)"', body)
        if quoted:
            return quoted.group(1)
        inner = re.findall(r"#loc\d+", body)
        return name(inner[0], hops + 1) if inner and hops < 20 else ""

    ops = re.findall(r'^\s*(?:%[^=]+= )?"?(?:stablehlo|chlo|sdy|mhlo)\.[a-z_]+.*?loc\((#loc\d+)\)', text, re.M)
    return collections.Counter(module_of(name(loc), depth) for loc in ops)


def kernels_by_module(hlo: str, depth: int) -> collections.Counter:
    """Kernels (fusions, convolutions, custom calls) of the optimized entry computation."""
    entry = hlo[hlo.index("ENTRY"):]
    kernels = [line for line in entry.splitlines() if re.search(r" (fusion|convolution|custom-call)\(", line)]
    return collections.Counter(module_of((re.search(r'op_name="([^"]*)"', k) or [None, ""])[1], depth)
                               for k in kernels)


def cycles_by_module(hlo: str, depth: int) -> tuple[collections.Counter, collections.Counter, int]:
    """The TPU compiler's estimated cycles of each top-level instruction (its backend_config), by
    module and by kind (opcode, with the fusion kind): where the cost model's step time goes.
    Also the number of instructions left out: those whose estimate is unknown (given as the
    largest 64-bit integer) and custom calls, which carry none (Pallas kernels: the step time
    rates them by the cost they declare, or by their bytes)."""
    by_module, by_kind, unknown = collections.Counter(), collections.Counter(), 0
    for line in hlo[hlo.index("ENTRY"):].splitlines():
        cycles = re.search(r'"estimated_cycles":"(\d+)"', line)
        if not cycles or int(cycles[1]) >= 2**62:
            unknown += bool(cycles) or " custom-call(" in line
            continue
        opcode = re.search(r"= \S+ ([a-z][a-z0-9-]*)\(", line)
        kind = re.search(r"kind=(k\w+)", line)
        name = re.search(r'op_name="([^"]*)"', line)
        by_module[module_of(name[1] if name else "", depth)] += int(cycles[1])
        by_kind[(opcode[1] if opcode else "?") + (f" {kind[1]}" if kind else "")] += int(cycles[1])
    return by_module, by_kind, unknown


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--topology", default="v5p:2x2x1")
    p.add_argument("--depth", type=int, default=2, help="module path components to group by")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-compile", action="store_true", help="count the lowered ops only")
    p.add_argument("--dump-hlo", metavar="PATH", help="also write the optimized program's text there")
    args, overrides = p.parse_known_args()
    config = load_config(args.config, [o.removeprefix("--config.") for o in overrides])
    chip, dims = parse_topology(args.topology)
    mesh = mesh_lib.make_mesh(config.mesh, topology_devices(chip, dims, args.topology))
    program = build_program(config, mesh)
    inputs = program.abstract_inputs(config.batch_size)
    with program.context():
        lowered = program.train_step.lower(inputs["state"], inputs["batch"], inputs["stop"])
        print(f"lowered: {count_ops(lowered):,} StableHLO ops")
        for module, n in lowered_ops_by_module(lowered.as_text(debug_info=True), args.depth).most_common(args.top):
            print(f"  {n:>7,}  {module}")
        if args.no_compile:
            return
        start = time.perf_counter()
        compiled = lowered.compile()
        hlo = compiled.as_text()
    if args.dump_hlo:
        with open(args.dump_hlo, "w") as f:
            f.write(hlo)
    kernels = kernels_by_module(hlo, args.depth)
    print(f"compiled in {time.perf_counter() - start:.0f} s: {sum(kernels.values()):,} kernels")
    for module, n in kernels.most_common(args.top):
        print(f"  {n:>7,}  {module}")
    by_module, by_kind, unknown = cycles_by_module(hlo, args.depth)
    total = sum(by_module.values())
    cost = cost_analysis(compiled)
    if "optimal_seconds" in cost:
        print(f"cost model's step time: {cost['optimal_seconds'] * 1e3:.2f} ms per chip")
    if unknown:
        print(f"{unknown} instructions (custom calls among them) have no cycle estimate and are left out below")
    if total:  # TPU only: the GPU and CPU compilers annotate no cycles
        for title, counter in (("module", by_module), ("kind of instruction", by_kind)):
            print(f"estimated cycles by {title} ({total:,} in all, one chip, one step):")
            for key, n in counter.most_common(args.top):
                print(f"  {100 * n / total:5.1f} %  {key}")


if __name__ == "__main__":
    main()

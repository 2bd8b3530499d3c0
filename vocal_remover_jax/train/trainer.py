"""`train_and_evaluate(config, workdir)`: the training loop shared by the three modes.

The state is created, stepped and checkpointed as global arrays on one mesh; every host feeds
its local slice of the batch. Resume, preemption (SIGTERM) and non-finite losses all end at a
checkpoint that an uninterrupted run would also have written.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import time

import jax
import ml_collections
import numpy as np
from flax import traverse_util
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding

from vocal_remover_jax.host_memory import compiled_on_first_call
from vocal_remover_jax.inference.model_file import shape_mismatch
from vocal_remover_jax.train import checkpoint, distributed, inputs, mesh as mesh_lib, steps
from vocal_remover_jax.train.metric_writer import MetricWriter
from vocal_remover_jax.train.program import TrainProgram, build_program, check_batch


class NonFiniteLossError(RuntimeError):
    pass


def _global_batch(batch: dict, sharding: NamedSharding) -> dict:
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


class _Preemption:
    """SIGTERM on any process stops every process after the same step.

    Each step takes this process's flag as an input and returns the maximum over all devices
    (an all-reduce of one int per device inside the step, so no extra collective or host
    sync). The loop reads that value `LAG` steps late, when the host has already waited for it
    (`_MetricWindow.IN_FLIGHT`), so every process sees the same value after the same step and
    they save one checkpoint together. Orbax's `reached_preemption` would need JAX's
    preemption service (a coordination-service notifier, absent in single-process runs); this
    works the same with one process, on CPU (gloo) and on a pod.
    """

    LAG = 2

    def __init__(self, mesh: Mesh):
        self.requested = False
        self._old = None
        self._sharding = mesh_lib.batch_sharding(mesh)
        self._local = len(mesh.local_devices)
        self._agreed: collections.deque = collections.deque()

    def flags(self) -> jax.Array:
        """This step's input: this process's flag on each of its devices."""
        return jax.make_array_from_process_local_data(self._sharding, np.full((self._local,), int(self.requested),
                                                                              np.int32))

    def agreed(self, stop: jax.Array, last: bool) -> bool:
        """Whether all processes stop now, given the step's reduced flag (same answer on all)."""
        self._agreed.append(stop)
        if last:  # the final step: everything still queued is read, on every process alike
            return False
        return len(self._agreed) > self.LAG and bool(self._agreed.popleft())

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no preemption handling
            self._old = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class _MetricWindow:
    """The device metrics of the steps since the last fetch.

    Fetching them only at log, checkpoint and eval steps keeps the host from waiting on the
    device every step; at most `IN_FLIGHT` steps (and their batches) queue ahead of it.
    """

    IN_FLIGHT = 2

    def __init__(self, step: int, batch_size: int, workdir: str):
        self.first_step, self.batch_size, self.workdir = step, batch_size, workdir
        self.pending: list[dict] = []
        self.restart_clock()

    def restart_clock(self) -> None:
        self.start = time.perf_counter()

    def add(self, device_metrics: dict) -> None:
        self.pending.append(device_metrics)
        if len(self.pending) > self.IN_FLIGHT:
            jax.block_until_ready(self.pending[-self.IN_FLIGHT - 1]["loss"])

    def fetch(self) -> dict:
        """Means over the window (the last learning rate), step time and throughput."""
        host = jax.device_get(self.pending)
        elapsed = time.perf_counter() - self.start
        for i, m in enumerate(host):
            if not m["finite"]:
                shown = {k: float(v) for k, v in m.items() if k != "finite"}
                raise NonFiniteLossError(f"non-finite loss at step {self.first_step + i + 1} ({shown}); "
                                         f"{self.workdir}/checkpoints keeps the last good step")
        self.first_step += len(host)
        self.pending = []
        out = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "finite"}
        out.update(learning_rate=float(host[-1]["learning_rate"]), step_time=elapsed / len(host),
                   examples_per_second=self.batch_size * len(host) / elapsed)
        return out


def init_from_params(config: ml_collections.ConfigDict, program: TrainProgram) -> dict:
    """Finetuning starts from a pretraining workdir's (or a model file's) generator parameters,
    which must be this model's, array for array."""
    params, _ = checkpoint.restore_params(config.init_from)
    if config.init_zero:
        params = checkpoint.zero_matching(params, config.init_zero)
    want = traverse_util.flatten_dict(program.abstract_state.params, sep="/")
    got = traverse_util.flatten_dict(dict(params), sep="/")
    if problem := shape_mismatch({k: v.shape for k, v in want.items()}, {k: v.shape for k, v in got.items()}):
        raise ValueError(f"config.init_from={config.init_from}: its parameters do not fit config.model: {problem}")
    params = {k: np.asarray(v, want[k].dtype) for k, v in got.items()}
    return jax.device_put(traverse_util.unflatten_dict(params, sep="/"), program.shardings.params)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains to `config.total_steps` (resuming from `workdir`); returns the last step's metrics.

    Raises NonFiniteLossError on a NaN/inf loss (the last saved checkpoint is kept as it was).
    """
    distributed.maybe_initialize(config.distributed)
    if config.mode not in steps.MODES:
        raise ValueError(f"config.mode {config.mode!r}: expected one of {steps.MODES}")
    primary = jax.process_index() == 0
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    if primary:
        checkpoint.save_config(workdir, config)

    mesh = mesh_lib.make_mesh(config.mesh)
    program = build_program(config, mesh)
    shardings, batch_sharding = program.shardings, program.batch_sharding

    nproc = jax.process_count()
    check_batch(config, mesh.size)
    local_batch = config.batch_size // nproc

    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
                                      every=config.checkpoint.every_steps, asynchronous=config.checkpoint.asynchronous)
    best = checkpoint.make_best_manager(os.path.join(workdir, "best"), config.checkpoint.best_metric,
                                                                    config.checkpoint.best_mode) if config.mode == "finetune" else None
    target = checkpoint.with_shardings(program.abstract_state, shardings)
    with program.context():
        if manager.latest_step() is not None:
            state, meta, step = checkpoint.restore(manager, target)
            examples = int(meta["global_examples_seen"])  # global: a run may resume on another host count
            logging.info("resumed from step %d of %s", step, workdir)
        else:
            start = init_from_params(config, program) if config.init_from else None  # None: drawn at random
            state = program.init_state(jax.random.key(config.seed), start)
            examples = 0
    step = int(state.step)

    heldout = None
    if config.heldout_dir:
        if config.mode != "finetune":
            raise ValueError(f"config.heldout_dir scores separations: it needs mode 'finetune', not {config.mode!r}")
        if primary:
            from vocal_remover_jax.train.heldout import HeldoutScorer

            heldout = HeldoutScorer(config.heldout_dir, config)
    writer = MetricWriter(workdir, enabled=primary)
    batches = inputs.train_batches(config, local_batch, examples // nproc, jax.process_index(), nproc)
    window = _MetricWindow(step, config.batch_size, workdir)
    metrics = {}
    train_step = compiled_on_first_call(program.train_step)
    try:
        with _Preemption(mesh) as preemption, program.context():
            while step < config.total_steps:
                batch = program.transforms[True](_global_batch(next(batches), batch_sharding))
                state, device_metrics = train_step(state, batch, preemption.flags())
                step += 1
                examples += config.batch_size
                last = step == config.total_steps
                stop = preemption.agreed(device_metrics.pop("stop"), last)
                window.add(device_metrics)
                save_due = stop or manager.should_save(step)
                eval_due = bool(config.eval_every_steps) and (step % config.eval_every_steps == 0 or last)
                log_due = step % config.log_every_steps == 0 or last
                if not (save_due or eval_due or log_due):
                    continue
                metrics = window.fetch()  # raises on a non-finite loss, before anything is saved
                if log_due:
                    writer.write(step, metrics, config.total_steps)
                if save_due:
                    checkpoint.save(manager, step, state, {"global_examples_seen": examples}, force=stop)
                if eval_due:
                    results = evaluate(config, program.eval_step, state.params, batch_sharding, local_batch,
                                       program.transforms[False])
                    writer.write(step, results, config.total_steps, prefix="eval/")
                    if best is not None:
                        checkpoint.save_best(best, step, state.params, results)
                    if config.heldout_dir:
                        params = multihost_utils.process_allgather(state.params, tiled=True)  # all processes
                        if heldout is not None:
                            writer.write(step, heldout(params), config.total_steps, prefix="heldout/")
                if stop:
                    logging.warning("SIGTERM (on this or another process): saved step %d, exiting", step)
                    break
                window.restart_clock()
            checkpoint.save(manager, step, state, {"global_examples_seen": examples}, force=True)
    finally:
        manager.wait_until_finished()
        manager.close()
        if best is not None:
            best.wait_until_finished()
            best.close()
        writer.close()
    return metrics


def evaluate(config, eval_step, params, batch_sharding, local_batch, transform) -> dict:
    sums = None
    for batch in inputs.eval_batches(config, local_batch, jax.process_index(), jax.process_count()):
        out = jax.device_get(eval_step(params, transform(_global_batch(batch, batch_sharding))))
        sums = out if sums is None else {k: sums[k] + out[k] for k in out}
    return steps.eval_metrics(sums) if sums else {}

"""`train_and_evaluate(config, workdir)`: the training loop shared by the three modes.

The state is created, stepped and checkpointed as global arrays on one mesh; every host feeds
its local slice of the batch. Resume, preemption (SIGTERM) and non-finite losses all end at a
checkpoint that an uninterrupted run would also have written.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vocal_remover_jax.models import build_discriminator, build_model
from vocal_remover_jax.train import checkpoint, distributed, inputs, mesh as mesh_lib, steps
from vocal_remover_jax.train.metric_writer import MetricWriter
from vocal_remover_jax.train.optim import make_optimizer
from vocal_remover_jax.train.state import TrainState


class NonFiniteLossError(RuntimeError):
    pass


def build(config: ml_collections.ConfigDict, mesh):
    """Model(s), optimizer(s), the boxed-state initialiser and the state's shardings."""
    model = build_model(config.model)
    tx = make_optimizer(config.optimizer, config.total_steps)
    disc = disc_tx = None
    if config.mode == "gan":
        disc = build_discriminator(config.discriminator)
        disc_tx = make_optimizer(config.get("disc_optimizer", config.optimizer), config.total_steps)
    frames, bins = config.model.cropsize, config.model.n_fft // 2 + 1
    x = jnp.zeros((1, frames, bins, config.model.in_channels), jnp.float32)

    def init(rng):
        k_model, k_disc = jax.random.split(rng)
        params = model.init({"params": k_model, "dropout": k_model}, x, deterministic=True)["params"]
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
        if disc is not None:
            d_params = disc.init({"params": k_disc, "dropout": k_disc}, x, x, deterministic=True)["params"]
            state = state.replace(disc_params=d_params, disc_opt_state=disc_tx.init(d_params))
        return state

    rules = mesh_lib.logical_rules(config.logical_rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(init, jax.random.key(0))
    shardings = mesh_lib.logical_shardings(boxed, mesh, rules)
    return model, tx, disc, disc_tx, init, nn.unbox(boxed), shardings


def _global_batch(batch: dict, sharding: NamedSharding) -> dict:
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


class _Preemption:
    """Turns SIGTERM into a flag the loop polls after each step."""

    def __init__(self):
        self.requested = False
        self._old = None

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


def _init_from(config, state, shardings):
    """Finetuning starts from a pretraining workdir's generator parameters."""
    params, _ = checkpoint.restore_params(config.init_from)
    params = jax.device_put(params, shardings.params)
    return state.replace(params=params)


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
    model, tx, disc, disc_tx, init, abstract, shardings = build(config, mesh)
    batch_sharding = mesh_lib.batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    rules = mesh_lib.logical_rules(config.logical_rules)

    nproc = jax.process_count()
    if config.batch_size % (nproc * config.grad_accum_steps) or config.batch_size % mesh.size:
        raise ValueError(f"batch_size {config.batch_size} must divide by the {mesh.size} devices, "
                         f"the {nproc} processes and grad_accum_steps {config.grad_accum_steps}")
    local_batch = config.batch_size // nproc

    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        init_jit = jax.jit(lambda rng: nn.unbox(init(rng)), out_shardings=shardings)
        train_step = jax.jit(steps.make_train_step(config, model, tx, disc, disc_tx),
                             in_shardings=(shardings, batch_sharding), out_shardings=(shardings, replicated),
                             donate_argnums=(0,))
        eval_step = jax.jit(steps.make_eval_step(config, model),
                            in_shardings=(shardings.params, batch_sharding), out_shardings=replicated)
        # Device-side augmentation: raw crops from the host -> the batch the step takes.
        transforms = {train: jax.jit(inputs.device_transform(config, train), in_shardings=(batch_sharding,),
                                     out_shardings=batch_sharding) for train in (True, False)}

    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"), keep=config.checkpoint.keep,
                                      every=config.checkpoint.every_steps, asynchronous=config.checkpoint.asynchronous)
    best = checkpoint.make_best_manager(os.path.join(workdir, "best"), config.checkpoint.best_metric,
                                                                    config.checkpoint.best_mode) if config.mode == "finetune" else None
    target = checkpoint.with_shardings(abstract, shardings)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        if manager.latest_step() is not None:
            state, meta, step = checkpoint.restore(manager, target)
            examples = int(meta["examples_seen"])
            logging.info("resumed from step %d of %s", step, workdir)
        else:
            state = init_jit(jax.random.key(config.seed))
            if config.init_from:
                state = _init_from(config, state, shardings)
            examples = 0
    step = int(state.step)

    writer = MetricWriter(workdir, enabled=primary)
    batches = inputs.train_batches(config, local_batch, examples, jax.process_index(), nproc)
    window = _MetricWindow(step, config.batch_size, workdir)
    metrics = {}
    try:
        with _Preemption() as preemption, jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            while step < config.total_steps:
                batch = transforms[True](_global_batch(next(batches), batch_sharding))
                state, device_metrics = train_step(state, batch)
                step += 1
                examples += local_batch
                window.add(device_metrics)
                stop = preemption.requested
                last = step == config.total_steps
                save_due = stop or manager.should_save(step)
                eval_due = bool(config.eval_every_steps) and (step % config.eval_every_steps == 0 or last)
                log_due = step % config.log_every_steps == 0 or last
                if not (save_due or eval_due or log_due):
                    continue
                metrics = window.fetch()  # raises on a non-finite loss, before anything is saved
                if log_due:
                    writer.write(step, metrics, config.total_steps)
                if save_due:
                    checkpoint.save(manager, step, state, {"examples_seen": examples}, force=stop)
                if eval_due:
                    results = evaluate(config, eval_step, state.params, batch_sharding, local_batch, transforms[False])
                    writer.write(step, results, config.total_steps, prefix="eval/")
                    if best is not None:
                        checkpoint.save_best(best, step, state.params, results)
                if stop:
                    logging.warning("SIGTERM: saved step %d, exiting", step)
                    break
                window.restart_clock()
            checkpoint.save(manager, step, state, {"examples_seen": examples}, force=True)
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
    if not sums or sums["count"] == 0:
        return {}
    count = sums.pop("count")
    return {k: float(v / count) for k, v in sums.items()}

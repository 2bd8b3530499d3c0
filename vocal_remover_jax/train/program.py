"""The jitted train and eval steps with their state and shardings: one setup for the trainer and `plan`.

Building it touches no device: the state is known only by its shapes (`jax.eval_shape`), so the
same program compiles for the real devices of a run and for compile-only TPU devices (`plan`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vocal_remover_jax import xla_cpu
from vocal_remover_jax.models import build_discriminator, build_model
from vocal_remover_jax.models.layers import traced_for_platform
from vocal_remover_jax.train import inputs, mesh as mesh_lib, steps
from vocal_remover_jax.train.optim import make_optimizer
from vocal_remover_jax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    config: ml_collections.ConfigDict
    mesh: Mesh
    rules: tuple
    model: nn.Module
    tx: optax.GradientTransformation
    disc: nn.Module | None
    disc_tx: optax.GradientTransformation | None
    init: Callable  # (rng, params=None) -> TrainState of nn.Partitioned (boxed) values
    abstract_state: TrainState  # ShapeDtypeStructs
    shardings: TrainState  # NamedShardings, the same tree
    batch_sharding: NamedSharding
    # jitted: (rng, params=None) -> sharded TrainState. Given `params` (finetuning's `init_from`),
    # none are drawn: that program has no random initialisers, the slowest thing to compile on CPU.
    init_state: Callable
    train_step: Callable  # jitted: (state, batch, stop) -> (state, metrics); `state` is donated
    eval_step: Callable  # jitted: (params, batch) -> metric sums

    @functools.cached_property
    def transforms(self) -> dict[bool, Callable]:
        """Jitted device-side augmentation, {train: fn}: the host's raw crops -> the batch the steps
        take (train/augment.py). Built on first use: it reads the records' manifest, which `plan`
        never needs."""
        with self.context():
            return {train: jax.jit(inputs.device_transform(self.config, train), in_shardings=(self.batch_sharding,),
                                   out_shardings=self.batch_sharding,
                                   compiler_options=xla_cpu.compiler_options(self.mesh.devices.flat[0].platform))
                    for train in (True, False)}

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """The mesh and logical axis rules that tracing, running and restoring happen under."""
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            yield

    def abstract_inputs(self, global_batch: int) -> dict:
        """ShapeDtypeStructs (with shardings) of every argument of `train_step` and `eval_step`."""
        train, evaluate = example_batches(self.config)
        shaped = lambda example: {k: jax.ShapeDtypeStruct((global_batch, *v.shape[1:]), v.dtype,
                                                          sharding=self.batch_sharding)
                                  for k, v in example.items()}
        state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                             self.abstract_state, self.shardings)
        return {"state": state, "batch": shaped(train), "eval_batch": shaped(evaluate),
                "stop": stop_flags_spec(self.mesh)}


def build_program(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainProgram:
    """Models, optimizers, the abstract state, its shardings and the jitted steps for `mesh`."""
    model = build_model(config.model)
    tx = make_optimizer(config.optimizer, config.total_steps)
    disc = disc_tx = None
    if config.mode == "gan":
        disc = build_discriminator(config.discriminator)
        disc_tx = make_optimizer(config.get("disc_optimizer", config.optimizer), config.total_steps)
    frames, bins = config.model.cropsize, config.model.n_fft // 2 + 1
    x = jax.ShapeDtypeStruct((1, frames, bins, config.model.in_channels), jnp.float32)
    platform = mesh.devices.flat[0].platform
    for_mesh = functools.partial(traced_for_platform, platform=platform)

    @for_mesh
    def init(rng, params=None):
        k_model, k_disc = jax.random.split(rng)
        sample = jnp.zeros(x.shape, x.dtype)
        if params is None:
            params = model.init({"params": k_model, "dropout": k_model}, sample, deterministic=True)["params"]
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
        if disc is not None:
            d_params = disc.init({"params": k_disc, "dropout": k_disc}, sample, sample, deterministic=True)["params"]
            state = state.replace(disc_params=d_params, disc_opt_state=disc_tx.init(d_params))
        return state

    rules = mesh_lib.logical_rules(config.logical_rules)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(lambda: init(jax.random.key(0)))  # the key too is only traced
    shardings = mesh_lib.logical_shardings(boxed, mesh, rules)
    batch_sharding = mesh_lib.batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    step = steps.make_train_step(config, model, tx, disc, disc_tx,
                                 grad_shardings=(shardings.params, shardings.disc_params))

    @for_mesh
    def train_step(state, batch, stop):
        new, metrics = step(state, batch)
        return new, dict(metrics, stop=jnp.max(stop))  # one value, the same on every process

    return TrainProgram(
        config=config, mesh=mesh, rules=rules, model=model, tx=tx, disc=disc, disc_tx=disc_tx, init=init,
        abstract_state=nn.unbox(boxed), shardings=shardings, batch_sharding=batch_sharding,
        init_state=jax.jit(lambda rng, params=None: nn.unbox(init(rng, params)), out_shardings=shardings,
                           compiler_options=xla_cpu.compiler_options(platform, run_once=True)),
        train_step=jax.jit(train_step, in_shardings=(shardings, batch_sharding, batch_sharding),
                           out_shardings=(shardings, replicated), donate_argnums=(0,),
                           compiler_options=train_step_compiler_options(config, mesh)),
        eval_step=jax.jit(for_mesh(steps.make_eval_step(config, model)), in_shardings=(shardings.params, batch_sharding),
                          out_shardings=replicated, compiler_options=xla_cpu.compiler_options(platform)))


def train_step_compiler_options(config: ml_collections.ConfigDict, mesh: Mesh) -> dict | None:
    """The config's effort levels (`config.compiler`, where set), and on CPU copy insertion with
    region analysis: XLA:CPU's default copies every optimizer moment of the donated state before
    the update (two fusions read the old value, one overwrites it), a thousand copies, 13 % of a
    small-model step; region analysis proves them unneeded. And every CPU program's options
    (`xla_cpu.compiler_options`)."""
    options = {name: float(value) for name, value in config.get("compiler", {}).items() if value}
    for name, value in options.items():
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"config.compiler.{name}={value}: XLA's effort levels lie in [-1, 1]")
    platform = mesh.devices.flat[0].platform
    options.update(xla_cpu.compiler_options(platform) or {})
    if platform == "cpu":
        options["xla_cpu_copy_insertion_use_region_analysis"] = True
    return options or None


def check_batch(config: ml_collections.ConfigDict, devices: int) -> None:
    """Every micro-batch spans every device: the batch divides by devices x accumulation steps."""
    if config.batch_size % (devices * config.grad_accum_steps):
        raise ValueError(f"batch_size {config.batch_size} must divide by the {devices} devices times "
                         f"grad_accum_steps {config.grad_accum_steps}")


def stop_flags_spec(mesh: Mesh) -> jax.ShapeDtypeStruct:
    """One stop flag per device (each process fills its own): the step reduces them to one."""
    return jax.ShapeDtypeStruct((mesh.size,), jnp.int32, sharding=mesh_lib.batch_sharding(mesh))


def example_batches(config: ml_collections.ConfigDict) -> tuple[dict, dict]:
    """One-example train and eval batches from the random source: the shapes and dtypes every
    source yields."""
    c = config.copy_and_resolve_references()  # (a ConfigDict copy shares its sections)
    c.data.source = "random"
    c.eval_batches = 1
    return (next(inputs.train_batches(c, 1, 0, 0, 1)), next(inputs.eval_batches(c, 1, 0, 1)))

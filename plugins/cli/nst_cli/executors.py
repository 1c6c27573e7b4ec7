"""Where ``nst batch`` and ``nst video`` run: the shared "Where it runs" options (``--devices``,
``--workers``, ``--ray``, ``--ray-address``, ``--cpus-per-worker``) and the executor they make.
One declaration for both commands, so the names, help and meaning cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nst_core import Registries
from nst_core.batch import LocalExecutor
from nst_core.errors import ConfigError

from nst_cli.run_options import option

WHERE = "Where it runs"

Devices = Annotated[str | None, option(
    "Local devices, one worker each: auto (every CUDA GPU, else the CPU), cpu, cuda:0,cuda:1 ... "
    "Default: --device's value.", WHERE, "--devices")]
Workers = Annotated[int | None, option(
    "How many workers: locally spread over --devices (CPU workers split the cores); on Ray the number of "
    "actors. Default: one per device / per GPU (or per --cpus-per-worker cores) of the cluster.",
    WHERE, "--workers")]
Ray = Annotated[bool, typer.Option("--ray", rich_help_panel=WHERE,
                                   help="Run on Ray: join the cluster in RAY_ADDRESS, else start one on this "
                                        "machine (pip install 'nst-core\\[ray]').")]
RayAddress = Annotated[str | None, option("Join this Ray cluster: auto, HOST:PORT or ray://HOST:10001.", WHERE,
                                          "--ray-address")]
CpusPerWorker = Annotated[int | None, option("CPU cores per Ray actor on a cluster without GPUs. Default: 1.",
                                             WHERE, "--cpus-per-worker")]


def check_where(ray: bool, ray_address: str | None, cpus_per_worker: int | None) -> None:
    """Refuse ``--cpus-per-worker`` without Ray (one line)."""
    if cpus_per_worker is not None and not (ray or ray_address):
        raise ConfigError("--cpus-per-worker is for Ray workers (--ray or --ray-address); locally "
                          "--workers splits the cores")


def make_executor(ray: bool, ray_address: str | None, devices: str, workers: int | None,
                  cpus_per_worker: int | None, registries: Registries) -> Any:
    """A :class:`~nst_core.batch.RayExecutor` with ``--ray`` / ``--ray-address`` (it connects
    now: a cluster that cannot be reached is a one-line error), else a
    :class:`~nst_core.batch.LocalExecutor` on ``devices``. Use it with ``with``."""
    if ray or ray_address:
        from nst_core.batch.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, workers=workers, cpus_per_worker=cpus_per_worker or 1,
                           devices=devices)
    return LocalExecutor(devices, workers=workers, registries=registries)

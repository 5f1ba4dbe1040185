"""``RayExecutor``: passbench's rows as Ray tasks. Ray does the scheduling; nothing here queues or pools.

Connecting: ``ray.init(address=...)`` with ``--ray-address`` / ``$RAY_ADDRESS`` (an existing cluster:
``ray start --head`` on one node, ``ray start --address HEAD:PORT`` on the others; docs/cluster.md), or,
without an address, a new local cluster on this machine (``address="local"``: every CPU of this machine,
no dashboard, a small object store: tasks exchange configs and records only). When Ray is already
initialised in this process (a notebook, the tests' 2-CPU cluster) that connection is used as it is and
left open.

Workers import passbench from the driver's checkout (``PYTHONPATH`` = the repository root in the job's
runtime environment: on a cluster the checkout sits at the same path on every node, e.g. a shared home)
and see the driver's ``PASSBENCH_*`` variables (``PASSBENCH_DATA``, ``PASSBENCH_SPARSE_DISPATCH``).

Two ways to run tasks:

* ``map(tasks)``: every task at once, each with the resources it declares (``Resources``: CPUs = the
  row's torch threads, one GPU for a CUDA row, memory); results come back as they finish;
* ``run_alone(task)``: one task holding *every* CPU (and the GPUs it asks for) of one node, the same
  node for every such task of this executor: a timed row never shares its node with other Ray work.

A task never raises on the driver: its exception, or a crashed worker / lost node, comes back as a
``Result`` with ``error`` set (a failed row), and the other tasks go on.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from passbench.errors import UserError
from passbench.paths import REPO_ROOT

EXECUTORS = ("local", "ray")
# Object store of a local cluster started here: tasks pass configs and records (kilobytes), never tensors;
# Ray's default (30 % of RAM) would reserve gigabytes of shared memory on a machine shared with others.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


class ExecutorError(UserError, RuntimeError):
    """The executor cannot start (Ray not installed, cluster unreachable): a usage error, nothing run."""


@dataclass(frozen=True)
class Resources:
    """What one task holds while it runs (Ray's ``num_cpus``, ``num_gpus``, ``memory``)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_mb: int | None = None


@dataclass(frozen=True)
class Task:
    """``fn(*args, **kwargs)`` on a worker; ``fn`` a module-level function (Ray pickles it by reference)."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    resources: Resources = Resources()


@dataclass
class Result:
    """What came back from a task: ``value``, or ``error`` (``"TypeName: message"``) and its traceback.

    ``node``: the address of the node it ran on; ``cpus``: the CPUs Ray assigned to it (``run_alone``: all of
    its node's)."""

    key: str
    value: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    node: str | None = None
    cpus: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def call(task: Task) -> Result:
    """Run ``task`` here and wrap what it returned or raised (never raises)."""
    t0 = time.perf_counter()
    try:
        value = task.fn(*task.args, **task.kwargs)
    except Exception as e:  # noqa: BLE001 - a failing task is a failed row, reported by the driver
        return Result(task.key, error=f"{type(e).__name__}: {e}", error_type=type(e).__name__,
                      traceback=traceback.format_exc(), seconds=time.perf_counter() - t0)
    return Result(task.key, value=value, seconds=time.perf_counter() - t0)


def _on_ray(task: Task) -> Result:
    """The Ray task body: ``call``, plus where it ran and the CPUs Ray assigned to it."""
    import ray  # noqa: PLC0415

    res = call(task)
    res.node = ray.util.get_node_ip_address()
    res.cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return res


def runtime_env() -> dict[str, Any]:
    """The job's runtime environment: this checkout first on ``PYTHONPATH``, the driver's ``PASSBENCH_*``."""
    env = {k: v for k, v in os.environ.items() if k.startswith("PASSBENCH_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": env}


class RayExecutor:
    """Tasks on a Ray cluster (module docstring). Use as a context manager: a cluster it started is shut
    down on exit; one it connected to stays up. It connects on first use.

    Args:
        address: a running cluster's address (``HEAD:PORT``, ``ray://HEAD:10001``); None: ``$RAY_ADDRESS``,
            else a new local cluster.
        num_cpus: CPUs of a new local cluster (default: this machine's).

    Raises:
        ExecutorError: Ray is not installed; on first use (``describe``, ``map``, ``run_alone``): the cluster
            cannot be reached or started.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        try:
            import ray  # noqa: PLC0415
        except ImportError:
            raise ExecutorError("--executor ray needs Ray: pip install -e '.[ray]' (./dev setup installs it)") from None
        self.ray = ray
        self.owned = False
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self._remote: Any = None
        self._alone_node: dict[bool, dict[str, Any]] = {}

    def _connect(self) -> None:
        """Connect on first use (a sweep whose rows all have records starts no cluster)."""
        if self._remote is not None:
            return
        ray = self.ray
        if not ray.is_initialized():
            kw: dict[str, Any] = {"runtime_env": runtime_env(), "logging_level": "WARNING"}
            if self.address is None:
                kw.update(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                          object_store_memory=LOCAL_OBJECT_STORE_BYTES)
            else:
                kw.update(address=self.address)
            # A local start is tried twice: on a loaded machine Ray's raylet can die waiting for its agent.
            for _attempt in range(1 if self.address else 2):
                try:
                    ray.init(**kw)
                    break
                except Exception as e:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError by Ray version
                    err = f"{type(e).__name__}: {e}"
            else:
                raise ExecutorError(f"cannot start Ray at {self.address or 'a local cluster'}: {err} (on a loaded "
                                    "machine a local start can time out: docs/cluster.md, Known limits)")
            self.owned = True
        self._remote = ray.remote(_on_ray)

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False

    def describe(self) -> str:
        """``'ray (a local cluster): 1 node, 2 CPUs, 0 GPUs'`` (for the sweep's first line)."""
        self._connect()
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
        gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        where = self.address or ("a local cluster" if self.owned else "the connected cluster")
        return f"ray ({where}): {len(nodes)} node{'s' * (len(nodes) != 1)}, {cpus:g} CPUs, {gpus:g} GPUs"

    def _options(self, res: Resources, cpus: float) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": res.gpus}
        if res.memory_mb:
            opts["memory"] = int(res.memory_mb) * 2**20
        return opts

    def map(self, tasks: list[Task]) -> Iterator[tuple[int, Result]]:
        """Submit every task at once; yield ``(index, result)`` as each finishes (any order)."""
        if not tasks:
            return
        self._connect()
        refs = {self._remote.options(**self._options(t.resources, t.resources.cpus)).remote(t): i
                for i, t in enumerate(tasks)}
        pending = list(refs)
        try:
            while pending:
                done, pending = self.ray.wait(pending, num_returns=1)
                for ref in done:
                    yield refs[ref], self._get(ref, tasks[refs[ref]])
        finally:  # the driver stopped early (an interrupt, an error): do not leave tasks running
            for ref in pending:
                self.ray.cancel(ref, force=True)

    def run_alone(self, task: Task) -> Result:
        """Run ``task`` holding every CPU of one node (and the GPUs it asks for): nothing else of Ray's runs
        there meanwhile. Every call uses the same node (per CPU / GPU kind), chosen once."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: PLC0415

        self._connect()
        need_gpu = task.resources.gpus > 0
        node = self._alone_node.get(need_gpu)
        if node is None:
            fits = sorted((n for n in self.ray.nodes() if n.get("Alive")
                           and n["Resources"].get("CPU", 0) >= task.resources.cpus
                           and n["Resources"].get("GPU", 0) >= task.resources.gpus),
                          key=lambda n: (n["NodeManagerAddress"], n["NodeID"]))
            if not fits:
                return Result(task.key, error=f"ExecutorError: no node of the cluster has {task.resources.cpus:g} CPUs"
                              f" and {task.resources.gpus:g} GPUs to time this row alone", error_type="ExecutorError")
            node = self._alone_node[need_gpu] = fits[0]
        cpus = node["Resources"]["CPU"]
        opts = self._options(task.resources, cpus)
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        return self._get(self._remote.options(**opts).remote(task), task)

    def _get(self, ref: Any, task: Task) -> Result:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as e:  # a crashed worker, a lost node, a cancelled task
            return Result(task.key, error=f"{type(e).__name__}: {e}", error_type=type(e).__name__)


def add_executor_options(parser: Any) -> None:
    """``--executor local|ray`` and ``--ray-address`` on a subcommand's parser."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: one row after the other in this process (default); ray: each row a Ray task "
                             "(docs/cluster.md)")
    parser.add_argument("--ray-address", default=None,
                        help="with --executor ray: a running cluster (HEAD:PORT); default $RAY_ADDRESS, else a new "
                             "local cluster on this machine")

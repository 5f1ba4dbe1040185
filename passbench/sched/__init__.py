"""Running a sweep's rows on a Ray cluster (``--executor ray``); ``local`` is the serial runner itself.

    executor.py  ``RayExecutor``: connect to (or start) a Ray cluster, run tasks in parallel with the
                 resources they declare, run a task alone on a node (timing); ``Task``, ``Result``,
                 ``add_executor_options`` (the CLI's ``--executor`` / ``--ray-address``)
    rows.py      a row as Ray tasks: resources from its config, accuracy in parallel with timing off,
                 timing alone in a final serial phase, the record assembled on the driver
    sweep.py     ``reproduce`` / ``figure --run`` on Ray: the rows without a record, records appended by
                 the driver alone in config order (the file a serial run writes), failed rows listed

Ray is an optional extra (``pip install -e .[ray]``), imported only when the executor is ``ray``.
Workers never write records: they return them, and the driver appends (``passbench.records``).
"""

from passbench.sched.executor import EXECUTORS, ExecutorError, RayExecutor, Resources, Result, Task, add_executor_options

__all__ = ["EXECUTORS", "ExecutorError", "RayExecutor", "Resources", "Result", "Task", "add_executor_options"]

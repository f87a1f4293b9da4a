"""Faults for the Ray tests, injected from outside artstyle. ``install`` is the Ray worker set-up
hook of the tests' Ray instance (``ray.init(runtime_env={"worker_process_setup_hook":
"ray_faults.install"})``, with this folder on the workers' PYTHONPATH): in a worker whose
environment names a marker file in ``MARKER_ENV`` (a test's actors, through their own
``runtime_env``), it makes the actor die mid-job. Ray runs such a hook only when given to
``ray.init``, not to one map's ``runtime_env``, hence this split."""

from __future__ import annotations

import os

MARKER_ENV = "ARTSTYLE_TEST_CRASH_MARKER"


def install() -> None:
    """In each worker process, before its work. With a marker named: the first actor to reach
    its third batch creates the marker and kills its own process, mid-batch; later actors (the
    restarted one) find the marker and carry on."""
    marker = os.environ.get(MARKER_ENV)
    if not marker:
        return
    import artstyle.ray as on_ray

    call, seen = on_ray.Predictor.__call__, {"batches": 0}

    def dying_call(self, batch):
        seen["batches"] += 1
        if seen["batches"] == 3:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return call(self, batch)  # another actor already died for this marker
            os._exit(1)  # a real process death: Ray must restart the actor and retry the batch
        return call(self, batch)

    on_ray.Predictor.__call__ = dying_call

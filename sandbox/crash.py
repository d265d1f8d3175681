"""Run `scrapesync sync` in a child process and SIGKILL it at a chosen point.

The sandbox stays in the calling process, so the caller keeps its truth and request log. Kill
points are observed, not timed: a delayed request that the child is known to be waiting on
(extract), or the load packages dlt writes into the pipeline's working directory (normalize,
load, after load). One window is too narrow to observe from outside: a load job the
destination has committed but dlt has not yet recorded as done, which the next load replays
(docs/dlt-behaviours.md, "Load packages and recovery"); for it the child kills itself
(`committed:<table>`, `arm_kill_after_commit`).
The child reads its settings from env vars exactly as a user's scheduler would set them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrapesync.sandbox.server import FaultRule, Sandbox

ROOT = Path(__file__).resolve().parent.parent
# each provider's first list request: a delay there holds the child inside extract
MAIN_LIST = {
    "reworkd": r"^/v1/outputs/",
    "scrapewise": r"^/api/scraper/load-history$",
    "opencx": r"^/crawl$",
    "outscraper": r"^/tasks$",
    "oxylabs": r"^/v1/queries/\d+/results$",  # collecting the finished jobs' results
}
KILL_POINTS = ("extract", "normalize", "load", "after_load", "committed")
# names the table after whose first committed load job the child kills itself
AFTER_COMMIT_ENV = "SCRAPESYNC_CRASH_AFTER_COMMIT"
Predicate = Callable[[], bool]


def sync_env(
    sandbox: Sandbox, provider: str, data_dir: Path, extra: dict[str, Any] | None = None
) -> dict[str, str]:
    """The environment of a child `scrapesync sync <provider>` pointed at the sandbox."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SOURCES__", "DESTINATION__"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["DLT_DATA_DIR"] = str(data_dir)
    options = {**sandbox.providers[provider].source_options(sandbox.url(provider)), **(extra or {})}
    for key, value in options.items():
        name = f"SOURCES__{provider.upper()}__{key.upper()}"
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return env


def pipeline_dir(data_dir: Path, provider: str) -> Path:
    """dlt's working directory of the provider's pipeline under `DLT_DATA_DIR`."""
    return data_dir / "pipelines" / f"scrapesync_{provider}"


def _packages(root: Path, stage: str) -> set[str]:
    folder = root / stage
    return {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()


@dataclass
class ChildSync:
    """One `scrapesync sync` child process."""

    process: subprocess.Popen[str]

    @classmethod
    def start(
        cls, provider: str, workdir: Path, env: dict[str, str], destination: str = "duckdb"
    ) -> ChildSync:
        # a child that is to die after a commit runs the CLI through this module, which arms it
        crash_point = AFTER_COMMIT_ENV in env
        module = "scrapesync.sandbox.crash" if crash_point else "scrapesync.pipelines.cli"
        command = [sys.executable, "-m", module, "sync", provider, "-q"]
        command += ["--destination", destination]
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return cls(process)

    def kill_when(self, predicate: Predicate, timeout: float = 120.0) -> bool:
        """SIGKILL the child as soon as `predicate` holds; False if it ended first."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            if predicate():
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()
                return True
            time.sleep(0.002)
        if self.process.poll() is None:
            self.process.kill()
            raise TimeoutError("the child sync neither ended nor reached the kill point")
        return False

    def finish(self, timeout: float = 300.0) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


def kill_point(point: str, sandbox: Sandbox, provider: str, data_dir: Path) -> Predicate:
    """A predicate that becomes true when the child reaches `point` (see `KILL_POINTS`).

    * extract: the child waits on a held list request (the 2nd one, so a page may be buffered).
    * normalize: an extracted package exists (extract committed it and the local state).
    * load: at least one job of the normalized package is complete (some tables merged).
    * after_load: the package is loaded; the after-load SQL and the report are still to come.
    * committed:<table>: never true: the child kills itself once the destination committed a
      load job of `<table>` (`killed_sync` arms it).
    * timer:<seconds>: that long after the call, wherever the child is (soak runs).
    """
    root = pipeline_dir(data_dir, provider)
    if point.startswith("timer:"):
        due = time.monotonic() + float(point.removeprefix("timer:"))
        return lambda: time.monotonic() >= due
    if point.startswith("committed:"):
        return lambda: False
    if point == "extract":
        rule = FaultRule(provider, MAIN_LIST[provider], kind="delay", delay=30.0, skip=1)
        sandbox.faults.add(rule)
        return lambda: rule.times == 0
    if point == "normalize":
        return lambda: bool(_packages(root, "normalize/extracted"))
    if point == "load":
        return lambda: any(
            any((root / "load/normalized" / package / "completed_jobs").glob("*"))
            for package in _packages(root, "load/normalized")
        )
    if point == "after_load":
        before = _packages(root, "load/loaded")
        return lambda: bool(_packages(root, "load/loaded") - before)
    raise ValueError(f"unknown kill point {point!r}; one of {KILL_POINTS}")


def killed_sync(
    sandbox: Sandbox,
    provider: str,
    workdir: Path,
    point: str,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Run one sync and kill it at `point`; True if the kill landed before the sync ended."""
    data_dir = workdir / "dlt"
    predicate = kill_point(point, sandbox, provider, data_dir)
    env = sync_env(sandbox, provider, data_dir, extra)
    if point.startswith("committed:"):
        env[AFTER_COMMIT_ENV] = point.removeprefix("committed:")
    child = ChildSync.start(provider, workdir, env)
    try:
        landed = child.kill_when(predicate)
    finally:
        sandbox.faults.clear()
        child.finish()
    return landed or child.process.returncode == -signal.SIGKILL


def clean_sync(
    sandbox: Sandbox, provider: str, workdir: Path, extra: dict[str, Any] | None = None
) -> tuple[int, str, str]:
    """Run one sync to its end; returns (exit code, stdout, stderr)."""
    env = sync_env(sandbox, provider, workdir / "dlt", extra)
    return ChildSync.start(provider, workdir, env).finish()


def arm_kill_after_commit(table: str) -> None:
    """SIGKILL this process right after the destination commits a load job of `table`.

    dlt 1.31 marks a job done only after the destination committed it (its pending-transition
    marker, written in `RunnableLoadJob._release`); a process killed in between leaves the job
    `started`, and the next load runs it again on top of the committed copy. The window is too
    short for an outside watcher, so the child kills itself as the window opens, every time.
    """
    from dlt.common.destination.client import RunnableLoadJob, TLoadJobState

    release = RunnableLoadJob._release

    def release_or_die(job: RunnableLoadJob, next_state: TLoadJobState) -> None:
        if next_state == "completed" and job.file_name().startswith(f"{table}."):
            os.kill(os.getpid(), signal.SIGKILL)
        release(job, next_state)

    RunnableLoadJob._release = release_or_die  # type: ignore[method-assign,assignment]


if __name__ == "__main__":  # a child sync started by `killed_sync` at a `committed:` point
    arm_kill_after_commit(os.environ[AFTER_COMMIT_ENV])
    from scrapesync.pipelines.cli import main

    sys.exit(main(sys.argv[1:]))

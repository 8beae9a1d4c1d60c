"""A Flower federation on ``127.0.0.1``: one SuperLink and N SuperNodes as subprocesses, always stopped.

:class:`Federation` is what lesson 11 uses::

    with Federation(num_nodes=3) as fed:          # SuperLink + 3 SuperNodes, each with its partition
        print(fed.startup_seconds)
        result = fed.run(APP_DIR, {"num-server-rounds": 3}, on_round=print)
    # every process is gone here, also after a KeyboardInterrupt inside the block

It needs Flower's executables (``flower-superlink``,
``flower-supernode``, ``flwr``; see :func:`flower_bin`) but imports no
``flwr`` itself. Offline: ``FLWR_TELEMETRY_ENABLED=0``,
``FLWR_DISABLE_UPDATE_CHECK=1`` and the SuperLink's
``--disable-runtime-dependency-installation`` (the app's dependencies, i.e.
``fedlab``, are already installed in the course environment). ``FLWR_HOME``
is a fresh temporary folder holding the connection in ``config.toml``.

Cleanup. Every process is started in its own session (``start_new_session``),
so its children (the SuperLink's ``flower-superexec`` and ``flwr-serverapp``,
a SuperNode's per-message ``flwr-clientapp``) share its process group.
:meth:`Federation.close` sends SIGTERM to every group and to every
descendant found, waits ``grace`` seconds, then SIGKILLs what is left. It runs
on ``__exit__`` (so on KeyboardInterrupt too), from ``weakref.finalize``
(garbage collection and interpreter exit, i.e. ``atexit``), and a small
watchdog process kills the groups if the Python that started them dies
without cleaning up (a kernel killed with SIGKILL).

The argv builders (:func:`superlink_argv`, :func:`supernode_argv`), the
environment (:func:`flower_env`), the connection file
(:func:`write_connection`) and the process helpers (:func:`start_process`,
:func:`stop_processes`, :func:`descendants`) are public and stable: the
workshop (``fedlab.workshop``) reuses them with TLS and SuperNode keys.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fedlab.flower import APP_DIR, core

CONNECTION = "fedlab-local"
HOST = "127.0.0.1"
OFFLINE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
"""Environment switches without which flwr phones home (telemetry, update check)."""
EXECUTABLES = ("flower-superlink", "flower-supernode", "flwr", "flower-superexec")
_ACTIVATED = re.compile(r"Activated node_id")


# ---- finding Flower ------------------------------------------------------------------------------


def flower_bin() -> Path:
    """The folder holding Flower's executables.

    In order: ``$FEDLAB_FLOWER_BIN``; the folder of the running Python (the
    course environment's ``bin``); the repository's ``.venv/bin``. Raises
    ``FileNotFoundError`` saying how to make it.
    """
    root = Path(__file__).resolve().parents[2]
    candidates = []
    if os.environ.get("FEDLAB_FLOWER_BIN"):
        candidates.append(Path(os.environ["FEDLAB_FLOWER_BIN"]))
    candidates += [Path(sys.executable).parent, root / ".venv" / "bin"]
    for c in candidates:
        if all((c / exe).exists() for exe in EXECUTABLES):
            return c
    raise FileNotFoundError(
        f"no folder with {', '.join(EXECUTABLES)} among {[str(c) for c in candidates]}: "
        "run `make install` (flwr is in requirements.lock) or set FEDLAB_FLOWER_BIN to a folder with them"
    )


def flower_env(flwr_home: str | os.PathLike, *, bin_dir: str | os.PathLike | None = None, base=None) -> dict:
    """Environment for Flower's processes: offline switches, ``FLWR_HOME``, the Flower bin first on ``PATH``.

    The SuperLink starts ``flower-superexec`` by name, so the Flower
    environment's ``bin`` must come first on ``PATH``.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(flower_bin() if bin_dir is None else bin_dir)
    env.update(OFFLINE_ENV)
    env["FLWR_HOME"] = str(flwr_home)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def write_connection(
    flwr_home: str | os.PathLike,
    *,
    address: str,
    name: str = CONNECTION,
    insecure: bool = True,
    root_certificates: str | os.PathLike | None = None,
) -> Path:
    """Write ``$FLWR_HOME/config.toml`` with the connection ``name`` -> ``address`` (used by ``flwr run ... name``)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"name={name!r}: a connection name may use letters, digits, '-' and '_'")
    if insecure and root_certificates is not None:
        raise ValueError("insecure=True with root_certificates: give the CA file for TLS, or insecure, not both")
    lines = ["[superlink]", f'default = "{name}"', "", f"[superlink.{name}]", f"address = {json.dumps(address)}"]
    lines.append("insecure = true" if insecure else "insecure = false")
    if root_certificates is not None:
        lines.append(f"root-certificates = {json.dumps(str(Path(root_certificates).resolve()))}")
    home = Path(flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- argv ----------------------------------------------------------------------------------------


def node_config_string(node_config: Mapping[str, object]) -> str:
    """``{"partition-id": 0, "data-file": "a.npz"}`` -> ``'partition-id=0 data-file="a.npz"'`` (TOML values)."""
    parts = []
    for key, value in node_config.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(key)):
            raise ValueError(f"node config key {key!r}: letters, digits, '-' and '_' only")
        parts.append(f"{key}={_toml_value(key, value)}")
    return " ".join(parts)


def _toml_value(key, value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | os.PathLike):
        return json.dumps(str(value))
    raise ValueError(f"{key}={value!r}: config values must be str, int, float or bool")


def superlink_argv(
    *,
    port: int,
    host: str = HOST,
    ssl_ca_certfile: str | os.PathLike | None = None,
    ssl_certfile: str | os.PathLike | None = None,
    ssl_keyfile: str | os.PathLike | None = None,
    enable_supernode_auth: bool = False,
    database: str | os.PathLike | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``flower-superlink`` argv: offline, on ``host:port`` (one port for nodes, ``flwr`` and health in 1.42).

    Without TLS files it runs ``--insecure``; with them (all three), TLS. In
    flwr 1.42 the Control API (``flwr run``) shares this port: anyone who
    reaches it (with the CA file) can run code on every connected node.
    """
    _port("port", port)
    tls = [ssl_ca_certfile, ssl_certfile, ssl_keyfile]
    if any(t is not None for t in tls) and not all(t is not None for t in tls):
        raise ValueError(
            f"ssl_ca_certfile={ssl_ca_certfile!r}, ssl_certfile={ssl_certfile!r}, ssl_keyfile={ssl_keyfile!r}: "
            "TLS needs all three files (or none, for --insecure)"
        )
    argv = ["flower-superlink"]
    if all(t is None for t in tls):
        if enable_supernode_auth:
            raise ValueError("enable_supernode_auth=True needs TLS: give ssl_ca_certfile, ssl_certfile, ssl_keyfile")
        argv.append("--insecure")
    else:
        argv += ["--ssl-ca-certfile", str(ssl_ca_certfile), "--ssl-certfile", str(ssl_certfile)]
        argv += ["--ssl-keyfile", str(ssl_keyfile)]
    if enable_supernode_auth:
        argv.append("--enable-supernode-auth")
    if host != HOST:
        argv += ["--host", host]
    argv += ["--port", str(port), "--disable-runtime-dependency-installation"]
    if database is not None:
        argv += ["--database", str(database)]
    return argv + list(extra)


def supernode_argv(
    *,
    superlink: str,
    port: int,
    node_config: Mapping[str, object] | None = None,
    root_certificates: str | os.PathLike | None = None,
    auth_private_key: str | os.PathLike | None = None,
    max_wait_time: float | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``flower-supernode`` argv: connects to ``superlink`` (``host:port``), its own local ``port``.

    ``root_certificates`` (the CA file) turns TLS on, else ``--insecure``;
    ``auth_private_key`` is the SuperNode's private key (``ssh-keygen -t ecdsa
    -b 384``) when the SuperLink runs ``--enable-supernode-auth``.
    ``max_wait_time``: give up after so many seconds without the SuperLink.
    """
    _port("port", port)
    if not isinstance(superlink, str) or not re.fullmatch(r"[^\s:/]+:\d+", superlink):
        raise ValueError(f"superlink={superlink!r}: expected 'host:port', e.g. '127.0.0.1:9100'")
    argv = ["flower-supernode"]
    argv += ["--insecure"] if root_certificates is None else ["--root-certificates", str(root_certificates)]
    argv += ["--superlink", superlink, "--port", str(port)]
    if auth_private_key is not None:
        argv += ["--auth-supernode-private-key", str(auth_private_key)]
    if node_config:
        argv += ["--node-config", node_config_string(node_config)]
    if max_wait_time is not None:
        argv += ["--max-wait-time", f"{float(max_wait_time):g}"]
    return argv + list(extra)


def flwr_run_argv(app_dir: str | os.PathLike, connection: str, *, run_config_file=None, stream: bool = True) -> list:
    """``flwr run <app_dir> <connection> [--run-config FILE] --stream``."""
    argv = ["flwr", "run", str(app_dir), connection]
    if run_config_file is not None:
        argv += ["--run-config", str(run_config_file)]
    return argv + (["--stream"] if stream else [])


def write_run_config(path: str | os.PathLike, run_config: Mapping[str, object]) -> Path:
    """A TOML file of run-config overrides for ``flwr run --run-config FILE`` (keys checked against the app's)."""
    unknown = sorted(set(run_config) - set(core.RUN_CONFIG))
    if unknown:
        raise ValueError(f"run_config keys {unknown}: not known; allowed: {sorted(core.RUN_CONFIG)}")
    core.parse_run_config(run_config)  # fail here, with the key named, rather than in the ServerApp
    p = Path(path)
    p.write_text("".join(f"{k} = {_toml_value(k, v)}\n" for k, v in run_config.items()))
    return p


def _port(name, port):
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError(f"{name}={port!r}: must be an int port in [1, 65535]")


def free_ports(count: int, *, host: str = HOST) -> list[int]:
    """``count`` distinct ports free on ``host`` right now (bound to port 0 and released)."""
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# ---- processes -------------------------------------------------------------------------------------


def start_process(argv: Sequence[str], *, env: Mapping, cwd, log: str | os.PathLike) -> subprocess.Popen:
    """Start ``argv`` in its own session (its children share its process group), output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (psutil if installed, else ``/proc``)."""
    try:
        import psutil

        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
    except ImportError:
        pass
    children: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def processes_with_home(flwr_home: str | os.PathLike) -> list[int]:
    """Live pids whose environment has ``FLWR_HOME=flwr_home`` (Linux ``/proc``; ``[]`` elsewhere).

    Catches a Flower process that left its group and lost its parent (a
    ``flwr-clientapp`` whose SuperNode died first).
    """
    want = f"FLWR_HOME={flwr_home}".encode()
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if want in (d / "environ").read_bytes().split(b"\0") and alive(int(d.name)):
                out.append(int(d.name))
        except (OSError, ValueError):
            continue
    return sorted(out)


def _signal_all(pgids, pids, sig) -> None:
    for g in pgids:
        try:
            os.killpg(g, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_processes(procs: Sequence[subprocess.Popen], *, grace: float = 5.0) -> list[int]:
    """SIGTERM each process's group and descendants, SIGKILL after ``grace`` s; returns pids still alive (none)."""
    procs = [p for p in procs if p is not None]
    pgids = [p.pid for p in procs]  # start_new_session: pgid == pid
    pids = set(pgids)
    for p in procs:
        pids.update(descendants(p.pid))
    _signal_all(pgids, pids, signal.SIGTERM)
    end = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    while time.monotonic() < end and any(alive(q) for q in pids):
        time.sleep(0.05)
    for p in procs:  # children started after the first sweep
        pids.update(descendants(p.pid))
    _signal_all(pgids, [q for q in pids if alive(q)], signal.SIGKILL)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(q) for q in pids):
        time.sleep(0.05)
    return sorted(q for q in pids if alive(q))


_WATCHDOG = r"""
import os, signal, sys, time
parent, path = int(sys.argv[1]), sys.argv[2]
def groups():
    try:
        return [int(x) for x in open(path).read().split()]
    except (OSError, ValueError):
        return None
while True:
    time.sleep(0.5)
    if groups() is None:      # the federation closed normally
        sys.exit(0)
    try:
        os.kill(parent, 0)
        continue
    except ProcessLookupError:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for g in groups() or []:
            try:
                os.killpg(g, sig)
            except OSError:
                pass
        time.sleep(3)
    try:
        os.remove(path)
    except OSError:
        pass
    sys.exit(0)
"""


def _shutdown(procs: list, watch_file: Path, grace: float, flwr_home: Path) -> list[int]:
    """Stop the federation's processes (shared by close(), weakref.finalize and atexit)."""
    left = stop_processes(list(procs), grace=grace)
    procs.clear()
    strays = processes_with_home(flwr_home)
    _signal_all([], strays, signal.SIGKILL)
    try:
        watch_file.unlink()
    except OSError:
        pass
    return left


# ---- a run's progress --------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What ``flwr run --stream`` showed: the parsed ``FEDLAB_*`` lines, and every line of output."""

    start: dict | None = None
    rounds: list = field(default_factory=list)
    done: dict | None = None
    lines: list = field(default_factory=list)
    seconds: float = float("nan")
    returncode: int | None = None

    @property
    def ok(self) -> bool:
        return self.done is not None and self.done.get("status") == "ok"


# ---- the federation -----------------------------------------------------------------------------------


class Federation:
    """A SuperLink and ``num_nodes`` SuperNodes on 127.0.0.1, started now, stopped by :meth:`close`.

    Parameters
    ----------
    num_nodes
        SuperNodes to start (1..16). Node ``i`` gets ``node_configs[i]``, by
        default ``{"partition-id": i, "num-partitions": num_nodes}``.
    node_configs
        One node config per node, e.g. ``{"data-file": "alice.npz"}``.
    start_timeout
        Seconds to wait for the SuperLink to be healthy and all nodes active.
    grace
        Seconds between SIGTERM and SIGKILL when stopping.
    workdir
        Folder for ``FLWR_HOME``, logs and run configs (default: a new temporary folder).

    Attributes
    ----------
    timings
        ``{"superlink_healthy": s, "nodes_active": s}`` since the constructor began.
    startup_seconds
        Until every node was active.
    address
        ``"127.0.0.1:<port>"`` of the SuperLink.

    """

    def __init__(
        self,
        num_nodes: int = 3,
        *,
        node_configs: Sequence[Mapping[str, object]] | None = None,
        start_timeout: float = 90.0,
        grace: float = 5.0,
        workdir: str | os.PathLike | None = None,
        bin_dir: str | os.PathLike | None = None,
    ):
        if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or not 1 <= num_nodes <= 16:
            raise ValueError(f"num_nodes={num_nodes!r}: must be an int in [1, 16]")
        if node_configs is None:
            node_configs = [{"partition-id": i, "num-partitions": num_nodes} for i in range(num_nodes)]
        if len(node_configs) != num_nodes:
            raise ValueError(f"node_configs has {len(node_configs)} entries: need one per node (num_nodes={num_nodes})")
        for i, nc in enumerate(node_configs):
            try:
                core.parse_node_config(nc)
            except ValueError as err:
                raise ValueError(f"node_configs[{i}]: {err}") from None
        if not (isinstance(start_timeout, int | float) and start_timeout > 0):
            raise ValueError(f"start_timeout={start_timeout!r}: must be a number of seconds > 0")
        self.num_nodes, self.grace = num_nodes, float(grace)
        self.node_configs = [dict(nc) for nc in node_configs]
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fedlab-flower-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.flwr_home = self.workdir / "flwr-home"
        self.bin_dir = Path(bin_dir) if bin_dir is not None else flower_bin()
        self.env = flower_env(self.flwr_home, bin_dir=self.bin_dir)
        self.port, *self.node_ports = free_ports(1 + num_nodes)
        self.address = f"{HOST}:{self.port}"
        write_connection(self.flwr_home, address=self.address)
        self.superlink: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen | None] = []
        self.timings: dict[str, float] = {}
        self._procs: list[subprocess.Popen] = []
        self._watch = self.workdir / "pgids"
        self._watch.write_text("")
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._watch, self.grace, self.flwr_home)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self._watch)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._start(start_timeout)
        except BaseException:
            self.close()
            raise

    # -- start-up --

    def _spawn(self, argv, log) -> subprocess.Popen:
        proc = start_process(argv, env=self.env, cwd=self.workdir, log=self.workdir / log)
        self._procs.append(proc)
        self._watch.write_text(" ".join(str(p.pid) for p in self._procs))
        return proc

    def _start(self, timeout: float) -> None:
        t0 = time.perf_counter()
        self.superlink = self._spawn(superlink_argv(port=self.port), "superlink.log")
        end = time.monotonic() + timeout
        while not self._healthy():
            self._check_alive(self.superlink, "superlink.log")
            if time.monotonic() > end:
                raise TimeoutError(f"the SuperLink was not healthy within start_timeout={timeout:g} s ({self._tail()})")
            time.sleep(0.05)
        self.timings["superlink_healthy"] = time.perf_counter() - t0
        for i, nc in enumerate(self.node_configs):
            argv = supernode_argv(superlink=self.address, port=self.node_ports[i], node_config=nc)
            self.nodes.append(self._spawn(argv, f"supernode{i}.log"))
        while self.active_nodes() < self.num_nodes:
            self._check_alive(self.superlink, "superlink.log")
            for i, node in enumerate(self.nodes):
                self._check_alive(node, f"supernode{i}.log")
            if time.monotonic() > end:
                raise TimeoutError(
                    f"{self.active_nodes()} of {self.num_nodes} SuperNodes active within start_timeout={timeout:g} s"
                    f" ({self._tail()})"
                )
            time.sleep(0.1)
        self.timings["nodes_active"] = time.perf_counter() - t0

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.address}/health", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def _check_alive(self, proc, log) -> None:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{log[:-4]} exited with code {proc.returncode}: {self._tail(log)}")

    def _tail(self, log: str = "superlink.log", n: int = 600) -> str:
        try:
            return f"{log}: ..." + (self.workdir / log).read_text(errors="replace")[-n:]
        except OSError:
            return f"no {log}"

    def log(self, name: str = "superlink") -> str:
        """The text of a log: ``"superlink"``, ``"supernode0"``, ... or ``"run1"`` (a run's ``flwr run`` output)."""
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def active_nodes(self) -> int:
        """How many SuperNodes the SuperLink has activated so far (counted in its log)."""
        try:
            return len(_ACTIVATED.findall((self.workdir / "superlink.log").read_text(errors="replace")))
        except OSError:
            return 0

    @property
    def startup_seconds(self) -> float:
        return self.timings.get("nodes_active", float("nan"))

    # -- runs --

    def stream(
        self,
        app_dir: str | os.PathLike = APP_DIR,
        run_config: Mapping[str, object] | None = None,
        *,
        timeout: float = 600.0,
    ) -> Iterator[tuple[str, object]]:
        """Run the app and yield its progress as it comes: ``("START"|"ROUND"|"DONE", payload)`` and
        ``("line", text)`` for every other output line; finally ``("exit", returncode)``.

        Raises ``TimeoutError`` after ``timeout`` seconds (the ``flwr run`` process is stopped).
        """
        if self.superlink is None or self.superlink.poll() is not None:
            raise RuntimeError("the federation is not running (closed, or its SuperLink exited)")
        self._runs = getattr(self, "_runs", 0) + 1
        cfg = self.workdir / f"run{self._runs}.toml"
        write_run_config(cfg, dict(run_config or {}))
        argv = flwr_run_argv(Path(app_dir).resolve(), CONNECTION, run_config_file=cfg)
        log = open(self.workdir / f"run{self._runs}.log", "w")
        proc = subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._procs.append(proc)
        lines: queue.Queue = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        end = time.monotonic() + timeout
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.01, min(0.5, end - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() > end:
                        raise TimeoutError(f"flwr run did not finish within timeout={timeout:g} s") from None
                    continue
                if line is None:
                    break
                log.write(line)
                log.flush()
                parsed = core.parse_line(line)
                yield parsed if parsed is not None else ("line", line.rstrip("\n"))
            yield "exit", proc.wait(timeout=30)
        finally:
            log.close()
            if proc.poll() is None:
                stop_processes([proc], grace=2)
            if proc in self._procs:
                self._procs.remove(proc)

    def run(
        self,
        app_dir: str | os.PathLike = APP_DIR,
        run_config: Mapping[str, object] | None = None,
        *,
        on_round: Callable[[dict], None] | None = None,
        on_event: Callable[[str, object], None] | None = None,
        timeout: float = 600.0,
        check: bool = True,
    ) -> RunResult:
        """Run the app to the end; ``on_round(payload)`` for each ``FEDLAB_ROUND`` as it arrives.

        ``check``: raise ``RuntimeError`` (with the output's tail) unless the
        run printed ``FEDLAB_DONE`` with status ``"ok"``.
        """
        result, t0 = RunResult(), time.perf_counter()
        for kind, payload in self.stream(app_dir, run_config, timeout=timeout):
            if on_event is not None:
                on_event(kind, payload)
            if kind == "line":
                result.lines.append(payload)
            elif kind == "START":
                result.start = payload
            elif kind == "ROUND":
                result.rounds.append(payload)
                if on_round is not None:
                    on_round(payload)
            elif kind == "DONE":
                result.done = payload
            elif kind == "exit":
                result.returncode = payload
        result.seconds = time.perf_counter() - t0
        if check and not result.ok:
            why = (result.done or {}).get("error") or "no FEDLAB_DONE line"
            tail = "\n".join(result.lines[-15:])
            raise RuntimeError(f"the Flower run failed ({why}); exit code {result.returncode}; last output:\n{tail}")
        return result

    # -- nodes and shutdown --

    def stop_node(self, index: int) -> None:
        """Stop SuperNode ``index`` (and its ClientApp processes) at once: a participant who vanishes."""
        if not isinstance(index, int) or not 0 <= index < len(self.nodes) or self.nodes[index] is None:
            raise ValueError(f"index={index!r}: must be a running node's index in [0, {len(self.nodes) - 1}]")
        proc = self.nodes[index]
        stop_processes([proc], grace=0.5)
        self.nodes[index] = None
        if proc in self._procs:
            self._procs.remove(proc)

    def pids(self) -> list[int]:
        """Every live process of the federation (the started ones and all their descendants)."""
        out = set(processes_with_home(self.flwr_home))
        for p in list(self._procs):
            if alive(p.pid):
                out.add(p.pid)
            out.update(q for q in descendants(p.pid) if alive(q))
        return sorted(out)

    def close(self) -> list[int]:
        """Stop every process (idempotent); returns pids still alive afterwards (expected: none)."""
        known = self.pids()
        if self._finalizer.alive:
            self._finalizer()
        if getattr(self, "_watchdog", None) is not None:
            try:
                self._watchdog.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
        left = [p for p in known if alive(p)]
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return left

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.num_nodes} nodes, started in {self.startup_seconds:.1f} s"
        return f"Federation({self.address}, {state})"

"""Run one untrusted submission's Jupyter kernel inside a bubblewrap sandbox (Linux).

A grader runs code written by people it does not control. On Linux, with
`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``, Debian
package ``bubblewrap``), each submission's kernel gets:

- **no network**: a new network namespace (only a loopback nobody listens on).
  The kernel talks to the grader over ZeroMQ *ipc* sockets (Unix socket files
  in a folder bound into the sandbox), not TCP.
- **a read-only view** of what it needs and nothing else: ``/usr`` (and the
  ``/bin``, ``/lib*`` links), a few files of ``/etc`` (:data:`ETC`), the
  Python environment (the venv and the base interpreter it links to), and
  from the course only ``fedlab/`` and ``datasets/`` (:data:`COURSE_PARTS`):
  ``solutions/``, ``instructor/``, other submissions, the gradebook's folder
  and the instructor's home are simply not there. ``hide=[...]`` masks more
  paths *inside* what is shown (an empty read-only folder, or ``/dev/null``
  for a file), e.g. the hidden tests' folder.
- **write access only to its own empty folder** (:attr:`Sandbox.workdir`,
  also ``HOME`` and ``TMPDIR``); the rest of the sandbox's file system is
  read-only or owned by another user.
- **a new PID namespace** that dies with the grader's handle on it
  (``--unshare-pid --die-with-parent``): the kernel sees only its own
  processes, cannot read ``/proc/<grader>/cmdline`` or signal the grader, and
  everything it started (a detached ``sleep 1000`` included) is killed when
  the kernel ends or is shut down.
- **an unprivileged identity and resource limits** (:class:`SandboxLimits`):
  address space (``RLIMIT_AS``), processes and threads (``RLIMIT_NPROC``),
  file size, open files, no core dumps (``prlimit``, util-linux). Root ignores
  ``RLIMIT_NPROC``, so when the grader runs as root (CI), the kernel runs as a
  fresh uid of its own (``setpriv``, util-linux; no capabilities, no new
  privileges) and the process limit counts that sandbox's processes only; as
  an ordinary user bwrap makes a user namespace and the limit is set inside
  it, which (Linux >= 5.14) also counts per sandbox.
- **no user namespaces of its own** (``--disable-userns``, bwrap >= 0.8): in
  one, the kernel could mount a tmpfs (memory that ``RLIMIT_AS`` does not see)
  or reach more of the Linux kernel. As root this takes a second,
  unprivileged bwrap inside the first (after the uid drop), costing a few ms.
- **a clean environment**: only the variables of :data:`ENV_KEEP` pass
  (no tokens or paths of the instructor's shell).

How a kernel ended is read with :func:`exit_status` / :func:`classify`:
``memory_limit``, ``process_limit``, ``killed``, ``crashed`` or ``exited``.
A 30 GB allocation raises ``MemoryError`` in the cell (the kernel lives on);
a fork bomb gets ``BlockingIOError`` (EAGAIN) in the cell; both are
classified from the cell's error, a dead kernel from its exit code and its
stderr (kept in :attr:`Sandbox.log`, outside the sandbox, never printed on
the grader's terminal).

Where no sandbox is available (not Linux, ``bwrap`` missing or refused by the
kernel, e.g. user namespaces disabled), :func:`probe` says why (it actually
runs ``bwrap ... true`` once), grading goes on with ``sandbox=none``, and
:func:`warn_once` prints :func:`warning` once, loudly.

Decisions (where the issue is silent):

- Memory is limited per process (``RLIMIT_AS``); a cgroup would bound the
  sum, but CI's machine offers only cgroup v1, so the total of a fork bomb of
  allocators is bounded by ``processes x memory_mb`` (both are options).
- The workdir's *total* size is not bounded, only each file (``file_mb``).
- Interrupts are sent as messages (``interrupt_mode='message'``): a SIGINT to
  bwrap would end the sandbox, not interrupt the kernel.
- The ipc socket files live in a folder the kernel can write (it creates
  them); the connection file (with the HMAC key) in a root-only folder bound
  read-only, so the grader never writes through a link the kernel placed.

Plugging into a jupyter_client kernel manager (the grader's ``kernel_manager`` does this)::

    box = Sandbox(course_root=ROOT, hide=[hidden_tests_dir, room_dir, gradebook_dir])
    km = box.kernel_manager(KernelManager, kernel_name="python3", kernel_spec_manager=..., client_factory=...)
    km.start_kernel(env=env)          # runs in box.workdir; env is filtered (ENV_KEEP)
    ...                               # km.interrupt_kernel() sends a message; exit_status(km) after a death
    km.shutdown_kernel(now=True)      # the PID namespace and all it holds die
    box.cleanup()
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

KINDS = ("bwrap", "none")
STATUSES = ("memory_limit", "process_limit", "killed", "crashed", "exited")
COURSE_PARTS = ("fedlab", "datasets")
ETC = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/mime.types",
)
ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "TZ", "VIRTUAL_ENV")
ENV_KEEP_PREFIXES = (
    "LC_",
    "PYTHON",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "MALLOC_",
    "JPY_",
    "PYDEVD_",
    "FEDLAB_",
    "MPL",
)
UID_RANGE = (1_600_000_000, 1_900_000_000)  # fresh uids for root's sandboxes: nobody on a host owns them
SETPRIV = "/usr/bin/setpriv"
PRLIMIT = "/usr/bin/prlimit"
_MEMORY_WORDS = ("MemoryError", "bad_alloc", "annot allocate memory", "can't allocate memory", "ut of memory")
_PROCESS_WORDS = ("Resource temporarily unavailable", "can't start new thread", "BlockingIOError")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed kernel (each process of it, for memory).

    Defaults, measured in the sandbox on this course's environment (torch 2.13
    CPU, 2 cores): ``import torch, numpy, fedlab`` and 20 steps of a 256-512-10
    MLP on 2048 rows peak at 0.9 GB of address space (1.2 GB without
    ``MALLOC_ARENA_MAX=2``, which the sandbox sets unless given; torch maps
    more than it touches), so ``memory_mb=4096`` leaves room for the lessons.
    ``processes=256`` counts threads too: that kernel runs 11 with
    ``OMP_NUM_THREADS=1``, 13 with torch's default 2 threads, one more per
    core it may use, so 256 keeps a 64-core machine working and a fork bomb
    small.
    """

    memory_mb: int = 4096
    processes: int = 256
    file_mb: int = 1024
    open_files: int = 1024

    def __post_init__(self):
        for name, low in (("memory_mb", 256), ("processes", 16), ("file_mb", 1), ("open_files", 64)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SandboxLimits: {name}={value!r}; allowed: an int >= {low}")


@dataclass(frozen=True)
class SandboxInfo:
    """What :func:`probe` found: ``kind`` is ``'bwrap'`` or ``'none'``; ``reason`` says why, in words."""

    kind: str
    reason: str
    bwrap: str | None = None
    userns_locked: bool = True


_probed: SandboxInfo | None = None
_warned = False
_lock = threading.Lock()


def _ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _system_args() -> list[str]:
    """Bind ``/usr`` read-only, recreate ``/bin``, ``/lib*`` (links on merged-/usr systems), a minimal ``/etc``."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ROOT_LINKS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for item in ETC:
        args += ["--ro-bind-try", item, item]
    # /tmp: an empty, read-only folder (the kernel's temp is TMPDIR); the inner bwrap mounts its scratch on it.
    return args + ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--dir", "/tmp"]


def _namespace_args(locked: bool) -> list[str]:
    args = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if os.geteuid() != 0:
        args += ["--unshare-user", "--disable-userns"] if locked else ["--unshare-user"]
    return args


def _drop_args(uid: int, limits: SandboxLimits, *, bwrap: str, locked: bool, cwd: str = "/") -> list[str]:
    """The command prefix run inside: drop to ``uid`` (root only), lock user namespaces, set the limits, exec.

    Root's sandbox has no user namespace (so that the kernel's uid is a real, unprivileged one that
    ``RLIMIT_NPROC`` counts); without one the kernel could make its own and, in it, mount a tmpfs (memory
    no limit sees) or reach more of the kernel's surface. So after dropping to ``uid``, a second, unprivileged
    bwrap puts the kernel in a user namespace that may not create any more (``--disable-userns``).
    """
    drop = []
    if os.geteuid() == 0:
        drop = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
        drop += ["--bounding-set=-all", "--no-new-privs"]
        if locked:
            drop += [bwrap, "--dev-bind", "/", "/", "--unshare-user", "--disable-userns", "--die-with-parent"]
            drop += ["--chdir", cwd, "--"]
    mb = 1024 * 1024
    return drop + [
        PRLIMIT,
        f"--as={limits.memory_mb * mb}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_mb * mb}",
        f"--nofile={limits.open_files}",
        "--core=0",
        "--",
    ]


def _caps_args() -> list[str]:
    # bwrap run by root drops every capability; setpriv needs these two to change uid.
    return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if os.geteuid() == 0 else []


def probe(*, refresh: bool = False) -> SandboxInfo:
    """Whether kernels can be sandboxed here: actually runs ``bwrap ... true`` once (cached)."""
    global _probed
    with _lock:
        if _probed is not None and not refresh:
            return _probed
        _probed = _probe()
        return _probed


def _probe() -> SandboxInfo:
    if not sys.platform.startswith("linux"):
        return SandboxInfo("none", f"no sandbox on {sys.platform}: bubblewrap needs Linux namespaces")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return SandboxInfo("none", "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    for tool in (PRLIMIT,) + ((SETPRIV,) if os.geteuid() == 0 else ()):
        if not os.access(tool, os.X_OK):
            return SandboxInfo("none", f"{tool} is missing (Debian: util-linux)")
    said = ""
    for locked in (True, False):
        inside = [*_drop_args(UID_RANGE[0], SandboxLimits(), bwrap=bwrap, locked=locked), "true"]
        cmd = [bwrap, *_system_args(), *_namespace_args(locked), *_caps_args(), "--", *inside]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as err:
            return SandboxInfo("none", f"bwrap could not run: {err}", bwrap)
        if done.returncode == 0:
            if locked:
                return SandboxInfo("bwrap", "bubblewrap works: no network, read-only course, own folder, limits", bwrap)
            return SandboxInfo(
                "bwrap",
                f"bubblewrap works, but cannot stop the kernel from making user namespaces ({said})",
                bwrap,
                userns_locked=False,
            )
        lines = (done.stderr or done.stdout).strip().splitlines()
        said = lines[-1] if lines else f"exit code {done.returncode}"
    return SandboxInfo("none", f"bwrap refused to start a sandbox: {said}", bwrap)


def warning(info: SandboxInfo) -> str:
    """The loud, one-time text a grader prints when it grades without a sandbox."""
    bar = "!" * 78
    return (
        f"{bar}\n!! NO SANDBOX: {info.reason}\n"
        "!! Every submission's code runs with YOUR permissions: it can read other submissions,\n"
        "!! the solutions and your files, use the network, and change the gradebook.\n"
        "!! Grade untrusted rooms on Linux with bubblewrap (apt-get install bubblewrap);\n"
        "!! every row of this gradebook says sandbox=none.\n"
        f"{bar}"
    )


def warn_once(info: SandboxInfo | None = None, *, file=None) -> bool:
    """Print :func:`warning` to stderr the first time it is called in this process; ``True`` if it printed."""
    global _warned
    info = info if info is not None else probe()
    with _lock:
        if _warned or info.kind != "none":
            return False
        _warned = True
    print(warning(info), file=file if file is not None else sys.stderr, flush=True)
    return True


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _environment(env: dict[str, str], workdir: str) -> dict[str, str]:
    """The kernel's variables: :data:`ENV_KEEP` and :data:`ENV_KEEP_PREFIXES` of ``env``; HOME, TMPDIR its folder."""
    kept = {k: v for k, v in env.items() if k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)}
    kept.update(HOME=workdir, TMPDIR=workdir, USER="learner", LOGNAME="learner", PYTHONDONTWRITEBYTECODE="1")
    kept.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    kept.setdefault("MALLOC_ARENA_MAX", "2")  # glibc reserves 64 MB of address space per arena (one per thread)
    return kept


class Sandbox:
    """One submission's sandbox: a host folder with the kernel's empty ``workdir``, its sockets and its log.

    Parameters
    ----------
    course_root
        The course checkout; only :data:`COURSE_PARTS` of it are shown (read-only).
    hide
        Paths to mask even if they lie inside something shown (e.g. the hidden tests' folder). A hidden path
        *containing* something shown (the instructor's home holding the interpreter) hides the rest of it.
    expose
        Extra paths shown read-only (e.g. another data folder).
    limits
        :class:`SandboxLimits`.
    python
        The kernel's interpreter; its venv (``sys.prefix``) and base interpreter are shown read-only.
    """

    def __init__(
        self,
        *,
        course_root: str | os.PathLike,
        hide: list[str | os.PathLike] | tuple = (),
        expose: list[str | os.PathLike] | tuple = (),
        limits: SandboxLimits = SandboxLimits(),
        python: str = sys.executable,
    ):
        if not isinstance(limits, SandboxLimits):
            raise ValueError(f"limits={limits!r}; allowed: a SandboxLimits")
        root = Path(course_root)
        if not root.is_dir():
            raise ValueError(f"course_root={str(course_root)!r} is not a folder; allowed: the course checkout")
        info = probe()
        if info.kind != "bwrap":
            raise RuntimeError(f"no sandbox available: {info.reason}")
        self.bwrap = info.bwrap
        self.locked = info.userns_locked
        self.limits = limits
        self.uid = UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0]) if os.geteuid() == 0 else os.getuid()
        self.shown = self._shown(root.resolve(), expose, python)
        self.hidden = sorted({os.path.realpath(p) for p in hide})
        self.root = tempfile.mkdtemp(prefix="fedlab-sandbox-")  # 0700, the grader's only
        self.workdir = os.path.join(self.root, "work")
        self.ipc = os.path.join(self.root, "ipc")
        self.conn = os.path.join(self.root, "conn")
        self.log = os.path.join(self.root, "kernel.log")
        os.mkdir(self.conn, 0o755)
        for folder in (self.workdir, self.ipc):
            self._make_kernels(folder)

    def _make_kernels(self, folder: str) -> None:
        """Make ``folder`` for the kernel's user: owned by the kernel's own uid when we are root."""
        os.mkdir(folder, 0o755 if os.geteuid() == 0 else 0o700)
        if os.geteuid() == 0:
            os.chown(folder, self.uid, self.uid)

    @staticmethod
    def _shown(root: Path, expose, python: str) -> list[str]:
        shown = [str(root / part) for part in COURSE_PARTS if (root / part).exists()]
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        if python != sys.executable:
            prefixes = {str(Path(python).parent.parent)}
        prefixes.add(str(Path(os.path.realpath(python)).parent.parent))
        shown += [os.path.realpath(p) for p in prefixes] + [os.path.realpath(p) for p in expose]
        shown = sorted({p for p in shown if not _under(p, "/usr")})
        return [p for p in shown if not any(_under(p, q) and p != q for q in shown)]  # drop nested ones

    def reset(self) -> None:
        """Empty the socket folder before a (re)start: nothing the last kernel left there is trusted."""
        shutil.rmtree(self.ipc, ignore_errors=True)
        self._make_kernels(self.ipc)

    def argv(self, argv: list[str], *, env: dict[str, str]) -> list[str]:
        """``argv`` (the kernel's command) run inside the sandbox, stderr to :attr:`log`, with ``env`` filtered."""
        args = [self.bwrap, *_system_args()]
        made = {"/tmp"}
        for dest in [*self.shown, self.workdir, self.ipc, self.conn]:
            for parent in _ancestors(dest):
                if parent not in made and not any(_under(parent, s) for s in self.shown):
                    args += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
        for path in self.shown:
            args += ["--ro-bind", path, path]
        args += ["--bind", self.workdir, self.workdir, "--bind", self.ipc, self.ipc, "--ro-bind", self.conn, self.conn]
        for path in self.hidden:
            if not any(_under(path, s) for s in self.shown):
                continue  # not shown at all
            if os.path.isdir(path):
                args += ["--tmpfs", path, "--remount-ro", path]
            elif os.path.exists(path):
                args += ["--ro-bind", "/dev/null", path]
        args += ["--remount-ro", "/", *_namespace_args(self.locked), *_caps_args(), "--chdir", self.workdir]
        args.append("--clearenv")
        for key, value in sorted(_environment(env, self.workdir).items()):
            args += ["--setenv", key, value]
        inside = _drop_args(self.uid, self.limits, bwrap=self.bwrap, locked=self.locked, cwd=self.workdir)
        return [*args, "--", *inside, *argv]

    def kernel_manager(self, cls=None, **kwargs):
        """An instance of a subclass of ``cls`` (default ``jupyter_client.KernelManager``) whose kernel runs here.

        ``kwargs`` go to ``cls`` (``kernel_name``, ``kernel_spec_manager``, ``client_factory``, ...). The
        manager uses ipc transport with its connection file in :attr:`conn`, launches the kernel's command
        through :meth:`argv` (with the ``env`` given to ``start_kernel``), sends interrupts as messages, and
        redirects the kernel's raw stdout/stderr to :attr:`log`.
        """
        if cls is None:
            from jupyter_client import KernelManager as cls
        box = self

        class Sandboxed(cls):
            @property
            def kernel_spec(self):
                spec = super().kernel_spec
                if spec is not None and spec.interrupt_mode != "message":
                    spec.interrupt_mode = "message"
                return spec

            def write_connection_file(self, **kw):
                box.reset()
                super().write_connection_file(**kw)
                if os.geteuid() == 0:
                    os.chown(self.connection_file, box.uid, box.uid)

            async def _async_pre_start_kernel(self, **kw):
                kw.setdefault("cwd", box.workdir)
                cmd, kw = await super()._async_pre_start_kernel(**kw)
                env = kw.get("env") or dict(os.environ)
                kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                kw["cwd"] = box.workdir
                log = open(box.log, "ab")  # noqa: SIM115 - the child owns it; closed below once launched
                kw["stdout"] = kw["stderr"] = log
                kw["stdin"] = subprocess.DEVNULL
                self._sandbox_log = log
                return box.argv(cmd, env=env), kw

            async def _async_launch_kernel(self, kernel_cmd, **kw):
                try:
                    return await super()._async_launch_kernel(kernel_cmd, **kw)
                finally:
                    log = getattr(self, "_sandbox_log", None)
                    if log is not None:
                        log.close()

        conn = os.path.join(self.conn, "kernel.json")
        km = Sandboxed(transport="ipc", ip=os.path.join(self.ipc, "kernel"), connection_file=conn, **kwargs)
        km.sandbox = self
        return km

    def stderr(self, limit: int = 20_000) -> str:
        """The tail of the kernel's raw stdout/stderr (never shown to the grader's terminal)."""
        try:
            with open(self.log, "rb") as handle:
                handle.seek(max(0, os.path.getsize(self.log) - limit))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Remove the host folder (workdir, sockets, log); call after the kernel is shut down."""
        shutil.rmtree(self.root, ignore_errors=True)


def local_kernel_manager(box: Sandbox | None = None, *, cls=None, **kwargs):
    """A kernel manager for an ipykernel of *this* Python, inside ``box`` if one is given.

    The one place the kernel's command line is written: :func:`fedlab.grader.kernel_manager` calls this
    with its own manager class and client classes (``cls``, ``client_factory=``); tests and benchmarks
    call it directly.
    """
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--HistoryManager.enabled=False"]

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(argv=argv, display_name="Python 3 (fedlab)", language="python", env={})

    kwargs = {"kernel_name": "python3", "kernel_spec_manager": ThisPython(), **kwargs}
    cls = cls if cls is not None else KernelManager
    return cls(**kwargs) if box is None else box.kernel_manager(cls, **kwargs)


def exit_code(km) -> int | None:
    """The sandbox's exit code (``None`` while it runs): bwrap returns 128+N for a kernel killed by signal N."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is None:
        return None
    return process.poll()


def classify(*, returncode: int | None = None, ename: str = "", evalue: str = "", log: str = "") -> str | None:
    """How a kernel or an execution ended, as one of :data:`STATUSES` (``None``: no limit hit, still running).

    - ``ename``/``evalue``: the error of a cell (the kernel lives on): ``MemoryError``, or torch's
      "can't allocate memory", is ``memory_limit``; ``BlockingIOError``/EAGAIN or "can't start new thread"
      is ``process_limit``.
    - ``returncode``: the sandbox's exit code (:func:`exit_code`; 128+N or -N for signal N). ``log`` (the
      kernel's stderr: :meth:`Sandbox.stderr` and the stderr stream of its last execution) tells a death by
      the memory or process limit from other ones. Otherwise SIGKILL is ``killed`` (the grader's kill, or the
      kernel's OOM killer), another signal ``crashed``, an exit ``exited``.
    """
    text = f"{ename}: {evalue}"
    if ename == "MemoryError" or any(word in text for word in _MEMORY_WORDS):
        return "memory_limit"
    if ename == "BlockingIOError" or any(word in text for word in _PROCESS_WORDS) or f"[Errno {errno.EAGAIN}]" in text:
        return "process_limit"
    if returncode is None:
        return None
    tail = log[-4000:]
    if any(word in tail for word in _MEMORY_WORDS):
        return "memory_limit"
    if any(word in tail for word in _PROCESS_WORDS):
        return "process_limit"
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signum == signal.SIGKILL:
        return "killed"
    return "crashed" if signum else "exited"


def exit_status(km, output: str = "") -> str | None:
    """:func:`classify` of a kernel manager's dead kernel (``None`` if it is alive).

    ``output``: what the grader collected from the kernel's last execution (its stderr stream): ipykernel
    forwards the process's own stderr there, so a C library's dying words ("std::bad_alloc") arrive in it.
    """
    code = exit_code(km)
    if code is None:
        return None
    box = getattr(km, "sandbox", None)
    return classify(returncode=code, log=(box.stderr() if box is not None else "") + output)

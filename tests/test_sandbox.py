"""The bubblewrap sandbox of graded kernels (issue 17, point 2): real kernels, real attacks.

Each test starts a real ipykernel through jupyter_client inside :class:`fedlab.sandbox.Sandbox` and runs code a
hostile learner would write; every assertion would fail on an unsandboxed kernel. Where bubblewrap is missing the
tests skip locally and fail under ``CI`` (``make sandbox-deps`` installs it).
"""

import hashlib
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fedlab import sandbox

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


@pytest.fixture(scope="module", autouse=True)
def needs_bwrap():
    info = sandbox.probe()
    if info.kind != "bwrap":
        if os.environ.get("CI") or sys.platform.startswith("linux") and os.geteuid() == 0:
            pytest.fail(f"the sandbox tests need bubblewrap (make sandbox-deps): {info.reason}")
        pytest.skip(f"no sandbox here: {info.reason}")


class Box:
    """A started sandboxed kernel and a way to run code in it."""

    def __init__(self, *, course_root=ROOT, env=None, **options):
        self.box = sandbox.Sandbox(course_root=course_root, **options)
        self.km = sandbox.local_kernel_manager(self.box)
        env = {**ENV, "PYTHONPATH": str(course_root), **(env or {})}  # the course first, as the grader does
        self.km.start_kernel(env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 180) -> dict:
        out = []

        def hook(msg):
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(content["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{content['ename']}: {content['evalue']}")

        reply = self.kc.execute_interactive(textwrap.dedent(code), timeout=timeout, output_hook=hook)["content"]
        return {
            "status": reply["status"],
            "ename": reply.get("ename", ""),
            "evalue": reply.get("evalue", ""),
            "out": "".join(out),
        }

    def close(self, *, now=True):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=now)
        self.box.cleanup()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A small course checkout: the package, data, solutions, instructor notes, hidden tests; a room beside it."""
    base = tmp_path_factory.mktemp("course")
    root = base / "course"
    for folder in ("fedlab/hidden_tests", "datasets", "solutions", "instructor"):
        (root / folder).mkdir(parents=True)
    (root / "fedlab" / "__init__.py").write_text("ANSWER = 42\n")
    (root / "fedlab" / "hidden_tests" / "test_02.py").write_text("SECRET = 'hidden'\n")
    (root / "datasets" / "hr.csv").write_text("bpm\n61\n")
    (root / "solutions" / "02_fedavg.ipynb").write_text("{'solution': 1}")
    (root / "instructor" / "notes.md").write_text("answers")
    room = base / "room"
    room.mkdir()
    (room / "bob.ipynb").write_text("{'bob': 1}")
    (base / "grades.csv").write_text("alice,10\n")
    return root


@pytest.fixture(scope="module")
def kernel(course):
    box = Box(course_root=course, hide=[course / "fedlab" / "hidden_tests"])
    yield box
    box.close()


@pytest.fixture(scope="module")
def real():
    """A sandboxed kernel over this repository (torch, numpy, the real fedlab)."""
    box = Box(limits=sandbox.SandboxLimits(memory_mb=3072, processes=128))
    yield box
    box.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def host_pids(needle: bytes) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def eventually(probe, timeout: float = 30.0):
    """``probe()`` once it is falsy (processes of a killed namespace take a moment to go), else its last value."""
    deadline = time.monotonic() + timeout
    while (value := probe()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def host_processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            count += f"Uid:\t{uid}\t" in status
    return count


# ---------------------------------------------------------------- no network


def test_no_network_not_even_the_hosts_loopback(kernel):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        result = kernel.run(f"""
            import socket
            for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("10.0.0.1", 80)]:
                try:
                    socket.create_connection((host, port), timeout=3).close()
                    print("CONNECTED", host)
                except OSError as err:
                    print("refused", host, err.errno)
            print(sorted(name for _, name in socket.if_nameindex()))
        """)
    finally:
        server.close()
    assert result["status"] == "ok", result
    assert "CONNECTED" not in result["out"]
    assert result["out"].count("refused") == 3
    assert "['lo']" in result["out"]


# ---------------------------------------------------------------- files: read-only, own folder, not visible


def test_writes_only_into_its_own_folder(kernel, course):
    venv_file = Path(sys.prefix) / "pyvenv.cfg"
    base_os = Path(os.__file__)
    before = {p: sha(p) for p in (course / "fedlab" / "__init__.py", venv_file, base_os)}
    result = kernel.run(f"""
        import os, tempfile
        for target in {[str(p) for p in before]!r} + [{str(course / "fedlab" / "new.py")!r}, "/usr/evil", "/evil"]:
            try:
                with open(target, "a") as handle:
                    handle.write("ALWAYS_PASS = True\\n")
                print("WROTE", target)
            except OSError as err:
                print("denied", target, err.errno)
        with open("mine.txt", "w") as handle:
            handle.write("ok")
        with tempfile.NamedTemporaryFile(dir=None) as tmp:
            print("tmp in home:", tmp.name.startswith(os.environ["HOME"]), os.getcwd() == os.environ["HOME"])
    """)
    assert result["status"] == "ok", result
    assert "WROTE" not in result["out"]
    assert result["out"].count("denied") == 6
    assert "tmp in home: True True" in result["out"]
    assert (Path(kernel.box.workdir) / "mine.txt").read_text() == "ok"
    assert {p: sha(p) for p in before} == before
    assert not (course / "fedlab" / "new.py").exists()


def test_nothing_else_is_writable_and_no_user_namespace_can_widen_that(kernel):
    result = kernel.run("""
        import os, subprocess
        writable = []
        for top in sorted(set(os.listdir("/")) - {"proc", "sys"}):
            for folder, dirs, _ in os.walk("/" + top):
                if os.access(folder, os.W_OK):
                    writable.append(folder)
                    dirs.clear()
        print("writable", writable)
        made = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs none /usr && echo MOUNTED"],
                              capture_output=True, text=True)
        print("unshare", made.returncode, made.stdout.strip())
    """)
    assert result["status"] == "ok", result
    writable = eval(result["out"].split("writable", 1)[1].split("\n", 1)[0].strip())
    assert writable and all(w.startswith((kernel.box.workdir, kernel.box.ipc)) for w in writable), writable
    assert "MOUNTED" not in result["out"] and "unshare 0" not in result["out"]


def test_sees_neither_other_submissions_nor_solutions_nor_hidden_tests(kernel, course):
    hidden = {
        "other submission": course.parent / "room" / "bob.ipynb",
        "gradebook": course.parent / "grades.csv",
        "solutions": course / "solutions" / "02_fedavg.ipynb",
        "instructor": course / "instructor" / "notes.md",
        "hidden tests": course / "fedlab" / "hidden_tests" / "test_02.py",
        "instructor's home": Path.home() / ".bash_history",
    }
    result = kernel.run(f"""
        import os
        for name, path in {[(k, str(v)) for k, v in hidden.items()]!r}:
            try:
                print("READ", name, open(path).read()[:20])
            except OSError as err:
                print("invisible", name, err.errno)
        print("course:", sorted(os.listdir({str(course)!r})))
        print("hidden dir:", os.listdir({str(course / "fedlab" / "hidden_tests")!r}))
        import fedlab
        print("package:", fedlab.ANSWER, open({str(course / "datasets" / "hr.csv")!r}).read().split())
    """)
    assert result["status"] == "ok", result
    assert "READ" not in result["out"]
    assert result["out"].count("invisible") == len(hidden)
    assert "course: ['datasets', 'fedlab']" in result["out"]
    assert "hidden dir: []" in result["out"]
    assert "package: 42 ['bpm', '61']" in result["out"]


def test_the_instructors_home_shows_only_the_interpreter(kernel):
    home = str(Path.home())
    needed = {Path(p).relative_to(home).parts[0] for p in kernel.box.shown if p.startswith(home + "/")}
    result = kernel.run(f"""
        import os
        print("home:", sorted(os.listdir({home!r})) if os.path.isdir({home!r}) else [])
    """)
    assert result["status"] == "ok", result
    listed = eval(result["out"].split("home:", 1)[1].strip())  # a printed list of names
    assert set(listed) <= needed
    assert set(os.listdir(home)) - needed, "the test needs something in the home folder to be hidden"


def test_the_kernel_sees_no_secret_of_the_graders_environment(course):
    box = Box(course_root=course, env={"LMS_TOKEN": "s3cret", "AWS_SECRET_ACCESS_KEY": "k"})
    try:
        result = box.run("import os; print(sorted(k for k in os.environ if 'TOKEN' in k or 'SECRET' in k))")
    finally:
        box.close()
    assert result["status"] == "ok", result
    assert "[]" in result["out"]


# ---------------------------------------------------------------- processes: the grader is out of reach


def test_cannot_read_or_signal_the_grader(kernel):
    grader = os.getpid()
    result = kernel.run(f"""
        import os, signal
        try:
            print("READ", open("/proc/{grader}/cmdline", "rb").read())
        except OSError as err:
            print("no cmdline", err.errno)
        print("parent is the grader:", os.getppid() == {grader})
        for pid in ({grader}, 1):  # the sandbox's init is root's; its parent, a bwrap of its own, would be suicide
            try:
                os.kill(pid, signal.SIGTERM)
                print("KILLED", pid)
            except OSError as err:
                print("cannot signal", pid, err.errno)
        print("uid", os.getuid(), "pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    """)
    assert result["status"] == "ok", result
    assert "READ" not in result["out"] and "KILLED" not in result["out"]
    assert "no cmdline" in result["out"] and "parent is the grader: False" in result["out"]
    assert os.getuid() == 0 or f"uid {os.getuid()}" in result["out"]
    if os.geteuid() == 0:
        assert "uid 0 " not in result["out"]
    pids = eval(result["out"].split("pids", 1)[1].strip())
    assert max(pids) < 100 and grader not in pids


def test_a_process_left_behind_dies_with_the_kernel(course):
    box = Box(course_root=course)
    marker = f"9871{os.getpid()}"  # unique to this run
    try:
        result = box.run(f"""
            import subprocess
            subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
            subprocess.Popen(["sh", "-c", "trap '' HUP TERM; exec sleep {marker}1"], start_new_session=True)
        """)
        assert result["status"] == "ok", result
        assert host_pids(f"sleep\0{marker}".encode()), "the test should see the detached sleeps while the kernel runs"
    finally:
        box.close(now=False)
    assert eventually(lambda: host_pids(f"sleep\0{marker}".encode())) == []


# ---------------------------------------------------------------- the lessons still work


def test_torch_numpy_and_fedlab_work_with_threads(real):
    result = real.run("""
        import threading
        import numpy as np
        import torch
        import fedlab
        from fedlab.fedavg import sample_clients
        torch.set_num_threads(2)
        a = torch.ones(256, 256)
        print("torch", float((a @ a).sum()))
        print("numpy", float(np.ones((64, 64)) @ np.ones(64) @ np.ones(64)))
        print("fedlab", fedlab.__file__, sorted(sample_clients(10, fraction=0.3, rng=0).tolist()))
        threads = [threading.Thread(target=lambda: sum(range(10**5))) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("threads ok")
    """)
    assert result["status"] == "ok", result
    assert "torch 16777216.0" in result["out"]
    assert "numpy 4096.0" in result["out"]
    from fedlab.fedavg import sample_clients

    expected = sorted(sample_clients(10, fraction=0.3, rng=0).tolist())
    assert f"fedlab {ROOT / 'fedlab' / '__init__.py'} {expected}" in result["out"]
    assert "threads ok" in result["out"]


# ---------------------------------------------------------------- resource bombs get a status, the host is fine


def test_a_30_gb_allocation_is_a_memory_limit_and_the_kernel_lives(real):
    limit = real.box.limits.memory_mb
    result = real.run(f"""
        import numpy as np
        small = np.empty({limit // 4} * 2**20, dtype=np.uint8)   # well under the limit: fine
        big = np.empty({limit + 512} * 2**20, dtype=np.uint8)    # untouched, so only the limit refuses it
    """)
    assert result["status"] == "error" and result["ename"] == "MemoryError", result
    assert sandbox.classify(ename=result["ename"], evalue=result["evalue"]) == "memory_limit"
    result = real.run("block = bytearray(30 * 2**30)")
    assert sandbox.classify(ename=result["ename"], evalue=result["evalue"]) == "memory_limit", result
    assert real.run("print(1 + 1)")["out"].strip() == "2"
    assert real.km.is_alive() and sandbox.exit_status(real.km) is None


def test_a_fork_bomb_hits_the_process_limit_and_is_cleaned_up(course):
    box = Box(course_root=course, limits=sandbox.SandboxLimits(processes=64))
    try:
        result = box.run("""
            import os
            read, write = os.pipe()
            children = 0
            try:
                for _ in range(10_000):
                    if os.fork() == 0:   # each child waits for the pipe to close, then leaves
                        os.close(write)
                        os.read(read, 1)
                        os._exit(0)
                    children += 1
            finally:
                print("children", children)
        """)
        uid = box.box.uid
        alive = host_processes_of(uid) if os.geteuid() == 0 else None
    finally:
        box.close()
    assert result["status"] == "error", result
    assert sandbox.classify(ename=result["ename"], evalue=result["evalue"]) == "process_limit", result
    children = int(result["out"].split("children", 1)[1].split()[0])
    assert 0 < children < 64
    if alive is not None:
        assert alive > children  # the bomb's children were there, under the sandbox's own uid ...
        assert eventually(lambda: host_processes_of(uid)) == 0  # ... and are gone with the kernel


def test_one_sandboxs_fork_bomb_leaves_the_next_one_its_processes(course):
    bomb = Box(course_root=course, limits=sandbox.SandboxLimits(processes=64))
    other = Box(course_root=course, limits=sandbox.SandboxLimits(processes=64))
    try:
        held = bomb.run("""
            import os
            read, write = os.pipe()
            try:
                while True:
                    if os.fork() == 0:
                        os.close(write)
                        os.read(read, 1)
                        os._exit(0)
            except BlockingIOError:
                print("bomb stopped")
        """)
        assert "bomb stopped" in held["out"], held
        result = other.run("""
            import subprocess
            print("spawned", sum(subprocess.run(["true"]).returncode == 0 for _ in range(20)))
        """)
    finally:
        bomb.close()
        other.close()
    assert result["status"] == "ok" and "spawned 20" in result["out"], result
    assert bomb.box.uid != other.box.uid or os.geteuid() != 0


def test_a_dead_kernel_is_classified_from_its_exit_and_its_stderr(course):
    box = Box(course_root=course)
    try:
        box.kc.execute("import os; os.kill(os.getpid(), 9)")
        box.km.provisioner.process.wait(timeout=60)
        assert sandbox.exit_status(box.km) == "killed"
        assert sandbox.exit_code(box.km) == 128 + signal.SIGKILL
    finally:
        box.close()
    box = Box(course_root=course)
    try:
        box.kc.execute("import os; os.kill(os.getpid(), 11)")
        box.km.provisioner.process.wait(timeout=60)
        assert sandbox.exit_status(box.km) == "crashed"
        assert sandbox.exit_status(box.km, "terminate called after throwing 'std::bad_alloc'") == "memory_limit"
    finally:
        box.close()


def test_a_torch_tensor_over_the_limit_is_a_memory_limit(real):
    limit = real.box.limits.memory_mb
    result = real.run(f"import torch; big = torch.empty({limit + 512} * 2**20, dtype=torch.uint8)  # untouched")
    assert result["status"] == "error", result
    assert sandbox.classify(ename=result["ename"], evalue=result["evalue"]) == "memory_limit", result
    assert real.km.is_alive()


def test_an_endless_loop_is_interrupted_by_message(kernel):
    kernel.kc.execute("while True: pass")
    time.sleep(1.0)
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=60)
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert kernel.km.is_alive()


def test_the_kernels_raw_output_never_reaches_the_graders_terminal(kernel, capfd):
    kernel.run("import os; os.write(1, b'GRADER: 11/11 points\\n'); os.write(2, b'FAKE\\n')")
    assert "11/11" not in capfd.readouterr().out


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"ename": "MemoryError"}, "memory_limit"),
        ({"ename": "BlockingIOError", "evalue": "[Errno 11] Resource temporarily unavailable"}, "process_limit"),
        ({"ename": "RuntimeError", "evalue": "can't start new thread"}, "process_limit"),
        ({"ename": "ValueError", "evalue": "bad"}, None),
        ({"returncode": 137}, "killed"),
        ({"returncode": -9}, "killed"),
        ({"returncode": 139}, "crashed"),
        ({"returncode": 134, "log": "Fatal Python error: Cannot allocate memory"}, "memory_limit"),
        ({"ename": "RuntimeError", "evalue": "DefaultCPUAllocator: can't allocate memory: you tried"}, "memory_limit"),
        ({"returncode": 1, "log": "BlockingIOError: [Errno 11] Resource temporarily unavailable"}, "process_limit"),
        ({"returncode": 0}, "exited"),
        ({}, None),
    ],
)
def test_classify_known_answers(kwargs, status):
    assert sandbox.classify(**kwargs) == status


@pytest.mark.parametrize("bad", [{"memory_mb": 10}, {"processes": 0}, {"file_mb": 1.5}, {"open_files": True}])
def test_bad_limits_name_the_argument(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        sandbox.SandboxLimits(**bad)


def test_without_bwrap_probe_says_why_and_the_warning_prints_once(monkeypatch, capsys):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox, "_warned", False)
    info = sandbox.probe(refresh=True)
    try:
        assert info.kind == "none" and "bubblewrap is not installed" in info.reason
        assert sandbox.warn_once(info) is True
        assert sandbox.warn_once(info) is False
        err = capsys.readouterr().err
        assert err.count("NO SANDBOX") == 1 and "sandbox=none" in err
        with pytest.raises(RuntimeError, match="no sandbox available"):
            sandbox.Sandbox(course_root=ROOT)
    finally:
        monkeypatch.undo()
        assert sandbox.probe(refresh=True).kind == "bwrap"

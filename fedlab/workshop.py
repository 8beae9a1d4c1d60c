"""The live room federation: ``python -m fedlab workshop serve`` and ``... workshop join``.

An instructor's laptop runs Flower's SuperLink; every participant's laptop
runs a SuperNode that trains lesson 11's app (:mod:`fedlab.flower`) on the
participant's *own* data (digits they draw in the canvas of
:mod:`fedlab.widgets.digit_pad`, or a file), which never leaves their laptop.
Both commands run in the course environment (``.venv``, which has flwr 1.42).

Design (Flower 1.42's model, wrapped so that joining is one step)
-----------------------------------------------------------------
* **Admission is Flower's**: TLS plus SuperNode authentication. The SuperLink
  runs with ``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile`` and
  ``--enable-supernode-auth``; a SuperNode starts with ``--root-certificates``
  and ``--auth-supernode-private-key``; only keys registered with
  ``flwr supernode register`` get in (an unregistered key: exit code 305).
* **The room token** is not a Flower concept. It is a short code (``K7QM-4XPA``)
  that authorises one thing: asking the instructor's small HTTPS enrolment
  endpoint (:mod:`fedlab.workshop_enrol`, run by ``serve`` beside the
  SuperLink, same certificate) to register a public key. ``join`` makes a
  fresh ECDSA P-384 key on the laptop, sends the public half with the token,
  and starts ``flower-supernode`` with the private half. A wrong token is
  refused by the endpoint; a key nobody registered is refused by the
  SuperLink itself. We chose this over pre-generated seat keys because the
  private key is made where it is used and never travels, and nothing has to
  be copied to a laptop beforehand; the manual route (``ssh-keygen``, hand over
  the ``.pub``, the instructor runs ``flwr supernode register``) is in
  ``docs/instructor-guide.md``.
* **The CA travels with the join line** as its pin (128 bits of its
  SHA-256): ``join`` fetches ``ca.pem`` from the endpoint and refuses it
  unless the pin matches, then verifies every connection (enrolment and the
  SuperNode's) against it.
* **What this does not protect** (printed at ``serve`` and at every ``join``):
  :data:`OPEN_SUPERLINK_WARNING`. The mode is for a trusted room network.
* **Dropouts**: the ServerApp's ``min-nodes`` and ``round-timeout`` (run
  config): a round goes on with those who answered once ``round-timeout``
  passes, if at least ``min-nodes`` did.
* **Offline**: ``FLWR_TELEMETRY_ENABLED=0``, ``FLWR_DISABLE_UPDATE_CHECK=1``
  and ``--disable-runtime-dependency-installation`` always; nothing downloads.
* **Processes**: every Flower program is started in its own process group and
  stopped (SIGTERM, then SIGKILL) on exit, Ctrl-C or SIGTERM; a SuperNode also
  gives up by itself when the room has been unreachable for a few minutes.

Folders: ``serve`` writes ``workshop-room/`` (certificates, ``room.json`` with
the token and pin, the keys it registered, logs); ``join`` writes
``workshop-join/`` (the CA, the laptop's key, the data file, logs).
"""

from __future__ import annotations

import argparse
import atexit
import getpass
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

OPEN_SUPERLINK_WARNING = """\
TRUSTED ROOM NETWORK ONLY. In Flower 1.42 the SuperLink's Control API, which
starts runs, listens on the same port as the participants' SuperNodes and has
no login. Anyone on this network who can reach the room's address can submit a
Flower app, and every joined SuperNode will run that app's code on its
laptop, with the participant's permissions and access to their data file.
TLS encrypts the traffic and SuperNode authentication keeps unregistered
laptops out of the federation; neither stops that. Your drawings stay on your
laptop, but the model updates computed from them are sent to the server, and
lesson 05 showed what updates can reveal. Join from an account with nothing
you would not show the room, and press Ctrl-C to leave."""

DEFAULT_PORT = 9092
"""The SuperLink's port (Fleet and Control API); the enrolment endpoint uses the next one."""

CONNECTION = "workshop"
OFFLINE_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
ROOM_DIR = "workshop-room"
JOIN_DIR = "workshop-join"

EXIT_REFUSED_ENROLMENT = 3
EXIT_REFUSED_SUPERLINK = 4
EXIT_ROOM_CLOSED = 5

_FLOWER_EXIT = re.compile(r"Exit Code: (\d+)")
_FLOWER_EXIT_MEANING = {
    305: "the SuperLink refused this laptop's key: it is not registered in this room "
         "(the room was restarted, or you were removed): join again with the new join line",
}


# ----------------------------------------------------------------------------
# Flower and its programs
# ----------------------------------------------------------------------------


def flower_available() -> bool:
    """Whether this Python has flwr (the course environment does)."""
    return importlib.util.find_spec("flwr") is not None


def not_flower_message() -> str:
    """What to tell someone who ran ``workshop`` in a Python without flwr."""
    return (
        f"workshop: this Python ({sys.executable}) has no flwr. The workshop commands run in the course "
        "environment (made by `make install`):\n"
        "    .venv/bin/python -m fedlab workshop serve ...\n"
        "    .venv/bin/python -m fedlab workshop join ADDRESS --token ... --pin ..."
    )


def flower_env(flwr_home: str | os.PathLike) -> dict[str, str]:
    """:func:`fedlab.flower.local.flower_env` (offline switches, ``FLWR_HOME``, Flower's ``bin`` first) + one thread."""
    from fedlab.flower import local

    env = local.flower_env(Path(flwr_home).resolve())
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models, many processes on a 2-core laptop
    return env


class Children:
    """Processes this command started, each in its own session, all stopped at exit.

    Stopping uses :func:`fedlab.flower.local.stop_processes`: SIGTERM to each
    process group and every descendant, SIGKILL after ``grace`` seconds.
    ``stop_all`` is registered with :mod:`atexit` and is safe to call twice.
    """

    def __init__(self, *, grace: float = 5.0) -> None:
        self.grace = grace
        self.procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        atexit.register(self.stop_all)

    def start(self, argv: Sequence[str], *, env: dict, log: Path | None = None, pipe: bool = False,
              cwd: str | os.PathLike | None = None) -> subprocess.Popen:
        """Start ``argv`` with output appended to ``log`` or sent to a text pipe; stdin closed."""
        from fedlab.flower import local

        if not pipe:
            proc = local.start_process(argv, env=env, cwd=cwd or os.getcwd(), log=log or os.devnull)
        else:
            proc = subprocess.Popen(
                list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True, text=True, bufsize=1, errors="replace",
            )
        with self._lock:
            self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> int | None:
        """Stop one process, its group and its descendants; returns its exit code."""
        from fedlab.flower import local

        local.stop_processes([proc], grace=self.grace)
        with self._lock:
            if proc in self.procs:
                self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        from fedlab.flower import local

        with self._lock:
            procs, self.procs = self.procs[::-1], []
        if procs:
            local.stop_processes(procs, grace=self.grace)


def _sigterm_as_exit() -> None:
    """In a command-line run, SIGTERM unwinds like Ctrl-C so that children are stopped."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


# ----------------------------------------------------------------------------
# The instructor's room
# ----------------------------------------------------------------------------


class Room:
    """What the dashboard shows and ``/status`` answers: participants, runs, rounds (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = "waiting"
        self.runs_done = 0
        self.names: dict[int, str] = {}  # node id -> display name
        self.online: set[int] = set()
        self.rounds: list[dict] = []
        self.done: dict | None = None
        self.refusals = 0

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "state": self.state,
                "runs_done": self.runs_done,
                "participants": sorted(self.names.values()),
                "online": sorted(self.names.get(n, str(n)) for n in self.online),
                "rounds": [dict(r) for r in self.rounds],
                "done": None if self.done is None else dict(self.done),
            }

    def name_of(self, node_id: int) -> str:
        return self.names.get(int(node_id), f"node {node_id}")


def _stamp(t0: float) -> str:
    return f"[{time.monotonic() - t0:6.1f}s]"


def format_round(payload: dict, room: Room) -> str:
    """One dashboard line for a ``FEDLAB_ROUND`` payload."""
    acc, loss = payload.get("accuracy"), payload.get("loss")
    who = ", ".join(room.name_of(n) for n in payload.get("node_ids", []))
    sent, replies = payload.get("sent", "?"), payload.get("replies", "?")
    missing = "" if replies == sent else f"; {sent - replies} did not answer" if isinstance(sent, int) else ""
    acc_text = "n/a" if acc is None else f"{acc:.3f}"
    loss_text = "n/a" if loss is None else f"{loss:.3f}"
    bar = "" if acc is None else " " + "#" * int(round(20 * acc))
    return (f"round {payload.get('round')}: accuracy {acc_text} loss {loss_text} "
            f"({payload.get('status', '?')}; {replies} of {sent} laptops{missing}: {who}) "
            f"{payload.get('seconds', 0):.1f}s{bar}")


def _run_config(**settings) -> dict:
    """Validated run config for the app (errors name the key, the value and what is allowed)."""
    from fedlab.flower import core

    cfg = {k: v for k, v in settings.items() if v is not None}
    core.parse_run_config(cfg)
    return cfg


def _online_nodes(env: dict) -> set[int] | None:
    """Node ids the SuperLink reports online (``flwr supernode ls``), or None if it could not say."""
    try:
        res = subprocess.run(["flwr", "supernode", "ls", CONNECTION, "--format", "json"], env=env,
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        nodes = json.loads(res.stdout).get("nodes", [])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError, AttributeError):
        return None
    return {int(n["node-id"]) for n in nodes if n.get("status") == "online"}


def _register(env: dict, keys: Path) -> Callable[[str, str], int]:
    def register(name: str, public_key: str) -> int:
        path = keys / f"{name}.pub"
        path.write_text(public_key + "\n")
        res = subprocess.run(
            ["flwr", "supernode", "register", str(path), CONNECTION, "--name", name, "--format", "json"],
            env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
        )
        try:
            answer = json.loads(res.stdout)
        except json.JSONDecodeError:
            answer = {}
        if res.returncode != 0 or not answer.get("success"):
            raise RuntimeError((res.stdout + res.stderr).strip()[-300:] or f"exit code {res.returncode}")
        return int(answer["node-id"])

    return register


def _wait_healthy(url_host: str, port: int, ca: Path, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPSConnection(url_host, port, context=context, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise RuntimeError(f"the SuperLink did not become healthy within {timeout:.0f}s (log {log}):\n{tail}")


def serve(
    *,
    address: str = "auto",
    port: int = DEFAULT_PORT,
    enrol_port: int | None = None,
    folder: str | os.PathLike = ROOM_DIR,
    rounds: int = 3,
    local_epochs: int = 1,
    batch_size: int = 32,
    lr: float = 0.1,
    seed: int = 0,
    min_nodes: int = 2,
    round_timeout: float = 60.0,
    fraction_evaluate: float = 0.0,
    model: str = "logreg",
    min_participants: int | None = None,
    once: bool = False,
    app: str | os.PathLike | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """Run a workshop room until Ctrl-C (or, with ``once``, until its first run ends). Returns an exit code.

    ``address`` is what participants will connect to (an IP or host name;
    ``"auto"``: this machine's address on its default route). The SuperLink
    listens on ``port``, the enrolment endpoint on ``enrol_port``
    (``port + 1``). A run of ``rounds`` rounds starts when
    ``min_participants`` SuperNodes are online, or when Enter is pressed
    (``min_participants=None``, needs a terminal); ``min_nodes`` and
    ``round_timeout`` go to the app (a round proceeds with those who answered).
    """
    from fedlab import validate
    from fedlab import workshop_enrol as enrol
    from fedlab.flower import APP_DIR, core, local

    port = validate.positive_int("port", port)
    enrol_port = port + 1 if enrol_port is None else validate.positive_int("enrol_port", enrol_port)
    if not (port <= 65535 and enrol_port <= 65535 and port != enrol_port):
        raise ValueError(f"port={port}, enrol_port={enrol_port}: must be two different ports in 1..65535")
    if min_participants is not None:
        validate.positive_int("min_participants", min_participants)
    elif not sys.stdin.isatty():
        raise ValueError("min_participants=None: without a terminal nobody can press Enter to start; "
                         "give --min-participants N")
    cfg = _run_config(**{"num-server-rounds": rounds, "local-epochs": local_epochs, "batch-size": batch_size,
                         "lr": lr, "seed": seed, "min-nodes": min_nodes, "round-timeout": float(round_timeout),
                         "fraction-evaluate": float(fraction_evaluate), "model": model})
    app_dir = Path(app) if app is not None else APP_DIR
    if not (app_dir / "pyproject.toml").is_file():
        raise ValueError(f"app={str(app_dir)!r}: not a Flower app folder (no pyproject.toml)")
    host = enrol.lan_address() if address == "auto" else address
    enrol.split_address(enrol.join_address(host, port), name="address")  # validates host
    try:
        import ipaddress

        bind = str(ipaddress.ip_address(host))
    except ValueError:
        bind = "0.0.0.0"  # a host name: listen everywhere, the certificate names the host
    loopback = "127.0.0.1" if bind in ("0.0.0.0", "127.0.0.1") else bind

    t0 = time.monotonic()
    folder = Path(folder).resolve()
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    home = folder / "flwr-home"
    home.mkdir(exist_ok=True)
    certs = enrol.make_certificates(folder / "certs", host)
    token, pin = enrol.new_token(), enrol.ca_pin(certs.ca.read_bytes())
    superlink = enrol.join_address(host, port)
    join_addr = enrol.join_address(host, enrol_port)
    local.write_connection(home, address=enrol.join_address(loopback, port), name=CONNECTION, insecure=False,
                           root_certificates=certs.ca)
    info = {"join": join_addr, "superlink": superlink, "token": token, "pin": pin, "ca": str(certs.ca),
            "pid": os.getpid(), "run_config": cfg}
    fd = os.open(folder / "room.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=1)

    env = flower_env(home)
    children = Children()
    room = Room()
    server = None
    try:
        sl_log = folder / "superlink.log"
        sl_argv = local.superlink_argv(port=port, host=bind, ssl_ca_certfile=certs.ca, ssl_certfile=certs.cert,
                                       ssl_keyfile=certs.key, enable_supernode_auth=True)
        sl = children.start(sl_argv, env=env, log=sl_log, cwd=folder)
        _wait_healthy(loopback, port, certs.ca, sl, sl_log, timeout=90)
        out(f"{_stamp(t0)} SuperLink up on {superlink} (TLS, SuperNode authentication on)")
        if address == "auto" and host.startswith("127."):
            out(f"{_stamp(t0)} no network found: only this machine can join; give --address to use another one")

        def on_event(kind: str, **f) -> None:
            if kind == "enrolled":
                with room.lock:
                    room.names[int(f["node_id"])] = f["name"]
                out(f"{_stamp(t0)} enrolled: {f['name']} (node {f['node_id']}, from {f['client']})")
            elif kind == "refused":
                with room.lock:
                    room.refusals += 1
                out(f"{_stamp(t0)} refused: {f['client']}: {f['reason']}")

        registry = enrol.Registry(token, superlink=superlink, register=_register(env, folder / "keys"),
                                  on_event=on_event, status=room.snapshot)
        server = enrol.make_server(registry, host=bind, port=enrol_port, certificates=certs)
        threading.Thread(target=server.serve_forever, name="enrolment", daemon=True).start()
        py = ".venv/bin/python"
        out("")
        out("=" * 78)
        out("Join line (put it on the screen):")
        out(f"  {py} -m fedlab workshop join {join_addr} --token {token} --pin {pin} --name YOUR_NAME")
        out("Notebook (lesson 11's kernel), after drawing your digits:")
        out(f'  workshop.join("{join_addr}", token="{token}", pin="{pin}", name="YOUR_NAME", data=pad)')
        out(f"Room token {token}   CA pin {pin}   (also in {folder / 'room.json'})")
        out("-" * 78)
        out(OPEN_SUPERLINK_WARNING)
        out("=" * 78)
        start_msg = (f"the run starts when {min_participants} laptops are online" if min_participants
                     else "press Enter to start a run")
        out(f"{_stamp(t0)} waiting for participants; {start_msg}; Ctrl-C ends the room")
        enter = threading.Event()
        if min_participants is None:
            def read_enter() -> None:
                for _ in sys.stdin:
                    enter.set()

            threading.Thread(target=read_enter, name="enter", daemon=True).start()
        run_no = 0
        while True:
            # -- wait for laptops (or Enter)
            enter.clear()
            shown = -1
            while True:
                online = _online_nodes(env)
                if online is not None:
                    with room.lock:
                        room.online = online
                    if len(online) != shown:
                        shown = len(online)
                        names = ", ".join(sorted(room.name_of(n) for n in online)) or "-"
                        out(f"{_stamp(t0)} online: {len(online)} ({names})")
                if (min_participants and online and len(online) >= min_participants) or enter.is_set():
                    break
                if sl.poll() is not None:
                    raise RuntimeError(f"the SuperLink stopped (exit {sl.returncode}); see {sl_log}")
                with room.lock:  # poll often while enrolled laptops are still connecting
                    pending = len(room.names) > len(room.online)
                enter.wait(3.0 if pending else 10.0)
            # -- one run
            run_no += 1
            with room.lock:
                room.state, room.rounds, room.done = "running", [], None
            out(f"{_stamp(t0)} run {run_no}: {cfg['num-server-rounds']} rounds, min-nodes {cfg['min-nodes']}, "
                f"round-timeout {cfg['round-timeout']}s")
            run_log = folder / f"run-{run_no}.log"
            run_cfg = local.write_run_config(folder / f"run-{run_no}.toml", cfg)
            argv = local.flwr_run_argv(app_dir, CONNECTION, run_config_file=run_cfg, stream=True)
            proc = children.start(argv, env=env, pipe=True, cwd=folder)
            done = None
            with open(run_log, "w") as logf:
                for line in proc.stdout:
                    logf.write(line)
                    logf.flush()
                    parsed = core.parse_line(line)
                    if parsed is None:
                        continue
                    kind, payload = parsed
                    if kind == "START":
                        out(f"{_stamp(t0)} run {run_no} started with "
                            f"{', '.join(room.name_of(n) for n in payload.get('node_ids', []))}")
                    elif kind == "ROUND":
                        with room.lock:
                            room.rounds.append(payload)
                        out(f"{_stamp(t0)} {format_round(payload, room)}")
                    elif kind == "DONE":
                        done = payload
                        break
            if done is not None:
                try:  # the run is over; do not wait for flwr's log stream to wind down
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    children.stop(proc)
            else:
                proc.wait()
            with room.lock:
                room.state, room.done = "done", done
                room.runs_done += 1
            if done is None:
                out(f"{_stamp(t0)} run {run_no} ended without FEDLAB_DONE (flwr run exit {proc.returncode}); "
                    f"see {run_log}")
            else:
                acc = done.get("accuracy")
                out(f"{_stamp(t0)} run {run_no} done: {done.get('status')}, {done.get('rounds')} rounds, "
                    f"final accuracy {'n/a' if acc is None else f'{acc:.3f}'}, {done.get('seconds', 0):.1f}s")
            if once:
                time.sleep(4)  # let the participants' status polls see "done"
                return 0 if done is not None and done.get("status") == "ok" else 1
            if min_participants is None:
                out(f"{_stamp(t0)} press Enter for another run, Ctrl-C to end the room")
            else:
                return 0 if done is not None and done.get("status") == "ok" else 1
    except KeyboardInterrupt:
        out(f"{_stamp(t0)} stopping the room")
        return 130
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        children.stop_all()


# ----------------------------------------------------------------------------
# A participant's laptop
# ----------------------------------------------------------------------------


def demo_shard(k: int, n: int):
    """Shard ``k`` of ``n`` IID shards of the shipped digits' training split: ``(x, y)`` (for tests and demos)."""
    from fedlab import validate
    from fedlab.flower import core

    n = validate.positive_int("demo_shards", n)
    validate.one_of("demo_shard", k, range(n))
    return core.partition_data(k, n)


def _default_name() -> str:
    try:
        raw = getpass.getuser()
    except (KeyError, OSError):
        raw = "participant"
    name = re.sub(r"[^A-Za-z0-9_.-]", "", raw)[:24].lstrip("_.-")
    return name or "participant"


def prepare_data(folder: Path, data=None, *, demo: tuple[int, int] | None = None) -> Path:
    """The laptop's data as an ``.npz`` the local SuperNode reads; returns its absolute path.

    ``data`` is a path to an ``.npz`` (``x`` ``[n, 64]`` in [0, 1], ``y``
    ``[n]`` in 0..9), an ``(x, y)`` pair, or an object with ``.data()``
    returning one (the canvas); ``demo=(k, n)`` takes a digits shard instead.
    """
    from fedlab import data as datalib

    if (data is None) == (demo is None):
        raise ValueError("data: give exactly one of data=FILE.npz / (x, y) / a canvas, or demo_shard=K")
    if demo is not None:
        x, y = demo_shard(*demo)
        return datalib.save_digits_file(folder / f"demo-shard-{demo[0]}-of-{demo[1]}.npz", x, y).resolve()
    if hasattr(data, "data") and callable(data.data):
        data = data.data()
    if isinstance(data, (str, os.PathLike)):
        datalib.load_digits_file(data)  # checks it, with errors naming the file
        return Path(data).expanduser().resolve()
    if isinstance(data, tuple) and len(data) == 2:
        x, y = datalib.check_digits_xy(*data, where="data")
        return datalib.save_digits_file(folder / "my-digits.npz", x, y).resolve()
    raise ValueError(f"data={type(data).__name__}: must be a path to an .npz, an (x, y) pair, or a canvas")


def run_node(
    *,
    superlink: str,
    ca: Path,
    key: Path,
    data_file: Path,
    folder: Path,
    status: Callable[[], dict] | None = None,
    node_id: int | None = None,
    once: bool = False,
    closed_after: float = 20.0,
    max_wait: float = 300.0,
    out: Callable[[str], None] = print,
) -> int:
    """Run this laptop's SuperNode until Ctrl-C, a refusal, or the room's end; returns an exit code.

    ``status()`` (the room's ``/status``) is polled every 2 s to report
    rounds; with ``once`` the node leaves after the room's next run ends. If
    the room is unreachable for ``closed_after`` seconds, the node leaves
    (:data:`EXIT_ROOM_CLOSED`); the SuperNode itself gives up after ``max_wait``
    seconds without the SuperLink. A SuperNode refused by the SuperLink gives
    :data:`EXIT_REFUSED_SUPERLINK`.
    """
    from fedlab import workshop_enrol as enrol
    from fedlab.flower import local

    home = folder / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    env = flower_env(home)
    log = folder / "supernode.log"
    argv = local.supernode_argv(superlink=superlink, port=enrol.free_port(), node_config={"data-file": str(data_file)},
                                root_certificates=ca, auth_private_key=key, max_wait_time=max_wait)
    children = Children()
    t0 = time.monotonic()
    exit_code: list[int] = []

    def watch(proc: subprocess.Popen) -> None:
        with open(log, "a") as fh:
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                m = _FLOWER_EXIT.search(line)
                if m:
                    exit_code.append(int(m.group(1)))

    try:
        proc = children.start(argv, env=env, pipe=True, cwd=folder)
        threading.Thread(target=watch, args=(proc,), name="supernode-log", daemon=True).start()
        out(f"{_stamp(t0)} SuperNode started (log {log}); your data stays in {data_file}")
        seen_rounds, runs_at_start, last_ok, state = 0, None, time.monotonic(), None
        while True:
            if proc.poll() is not None:
                time.sleep(0.3)  # let the log thread catch the last lines
                code = exit_code[0] if exit_code else None
                if code in _FLOWER_EXIT_MEANING:
                    out(f"{_stamp(t0)} refused: {_FLOWER_EXIT_MEANING[code]} (Flower exit code {code})")
                    return EXIT_REFUSED_SUPERLINK
                out(f"{_stamp(t0)} the SuperNode stopped (exit {proc.returncode}"
                    f"{'' if code is None else f', Flower exit code {code}'}); see {log}")
                return 1
            if status is not None:
                try:
                    snap = status()
                    last_ok = time.monotonic()
                except (OSError, enrol.EnrolmentError, ValueError):
                    snap = None
                    if time.monotonic() - last_ok > closed_after:
                        out(f"{_stamp(t0)} the room has closed (unreachable for {closed_after:.0f}s): leaving")
                        return EXIT_ROOM_CLOSED
                if snap is not None:
                    if runs_at_start is None:
                        runs_at_start = snap["runs_done"] - (snap["state"] == "done")
                    if snap["state"] != state:
                        state = snap["state"]
                        if state == "running":
                            seen_rounds = 0
                            out(f"{_stamp(t0)} a run has started")
                    for r in snap["rounds"][seen_rounds:]:
                        mine = node_id is not None and node_id in r.get("node_ids", [])
                        acc = r.get("accuracy")
                        out(f"{_stamp(t0)} round {r.get('round')}: room accuracy "
                            f"{'n/a' if acc is None else f'{acc:.3f}'}, {r.get('replies')} laptops; "
                            f"{'your update was in it' if mine else 'your update was not in it'}")
                    seen_rounds = len(snap["rounds"])
                    if once and snap["state"] == "done" and snap["runs_done"] > runs_at_start:
                        done = snap.get("done") or {}
                        acc = done.get("accuracy")
                        out(f"{_stamp(t0)} the run is over (final accuracy "
                            f"{'n/a' if acc is None else f'{acc:.3f}'}): leaving")
                        return 0
            time.sleep(2.0)
    except KeyboardInterrupt:
        out(f"{_stamp(t0)} leaving the room")
        return 130
    finally:
        children.stop_all()


def join(
    address: str,
    *,
    token: str,
    pin: str,
    name: str | None = None,
    data=None,
    demo_shard: int | None = None,
    demo_shards: int = 3,
    folder: str | os.PathLike = JOIN_DIR,
    once: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Join a workshop room in one step; returns an exit code (0 fine, 130 after Ctrl-C / interrupt).

    Checks the data, prints :data:`OPEN_SUPERLINK_WARNING`, fetches the room's
    CA and checks it against ``pin``, makes a fresh key, enrols its public half
    with ``token``, then runs the SuperNode (:func:`run_node`) until you stop it
    (Ctrl-C, or the notebook's stop button), the room closes, or, with
    ``once``, the room's next run ends. ``data``: see :func:`prepare_data`.
    """
    from fedlab import workshop_enrol as enrol

    token = enrol.normalize_token(token)
    pin = enrol.normalize_pin(pin)
    enrol.split_address(address)
    name = enrol.check_name(_default_name() if name is None else name)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    demo = None if demo_shard is None else (demo_shard, demo_shards)
    data_file = prepare_data(folder, data, demo=demo)
    out(OPEN_SUPERLINK_WARNING)
    out("")
    try:
        ca_pem = enrol.fetch_ca(address, pin)
        ca = folder / "ca.pem"
        ca.write_bytes(ca_pem)
        key = folder / f"node-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.key"
        public = enrol.new_node_key(key)
        answer = enrol.enrol(address, ca_pem, token=token, name=name, public_key=public)
    except enrol.EnrolmentError as err:
        out(f"join refused: {err}")
        return EXIT_REFUSED_ENROLMENT
    out(f"enrolled as {answer['name']} (node {answer['node_id']}); connecting to the SuperLink {answer['superlink']}")
    return run_node(
        superlink=answer["superlink"], ca=ca, key=key, data_file=data_file, folder=folder,
        status=lambda: enrol.room_status(address, ca_pem, token=token), node_id=int(answer["node_id"]),
        once=once, out=out,
    )


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``workshop`` command line: ``serve`` and ``join``."""
    parser = argparse.ArgumentParser(
        prog="python -m fedlab workshop",
        description="The live room federation (Flower). Instructor: serve. Participants: join.",
        epilog=OPEN_SUPERLINK_WARNING, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="workshop_command", required=True)
    s = sub.add_parser("serve", help="start the room: SuperLink, enrolment, dashboard, runs")
    s.add_argument("--address", default="auto", help="IP or host name participants connect to (default: this "
                   "machine's address on its default route)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"SuperLink port (default {DEFAULT_PORT})")
    s.add_argument("--enrol-port", type=int, default=None, help="enrolment port (default: --port + 1)")
    s.add_argument("--dir", default=ROOM_DIR, help=f"room folder: certificates, token, logs (default {ROOM_DIR}/)")
    s.add_argument("--rounds", type=int, default=3, help="rounds per run (default 3)")
    s.add_argument("--local-epochs", type=int, default=1, help="local epochs per round (default 1)")
    s.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32; 0 = full batch)")
    s.add_argument("--lr", type=float, default=0.1, help="client learning rate (default 0.1)")
    s.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    s.add_argument("--model", default="logreg", help="logreg or mlp (default logreg)")
    s.add_argument("--min-nodes", type=int, default=2, help="fewest replies for a round to count (default 2)")
    s.add_argument("--round-timeout", type=float, default=60.0,
                   help="seconds a round waits before going on with those who answered (default 60)")
    s.add_argument("--fraction-evaluate", type=float, default=0.0,
                   help="share of laptops asked to evaluate each round (default 0)")
    s.add_argument("--min-participants", type=int, default=None,
                   help="start the run when this many laptops are online (default: when you press Enter)")
    s.add_argument("--once", action="store_true", help="end the room after its first run")
    s.add_argument("--app", default=None, help="Flower app folder (default: fedlab/flower/app)")
    j = sub.add_parser("join", help="join a room with your own data, in one step")
    j.add_argument("address", help="the room's address from the join line, HOST:PORT")
    j.add_argument("--token", required=True, help="the room token from the join line")
    j.add_argument("--pin", required=True, help="the CA pin from the join line")
    j.add_argument("--name", default=None, help="your display name on the dashboard (default: your user name)")
    j.add_argument("--data", default=None, help="your .npz (x [n, 64] in [0, 1], y [n] in 0..9)")
    j.add_argument("--demo-shard", type=int, default=None, help="use shard K of the shipped digits instead")
    j.add_argument("--demo-shards", type=int, default=3, help="number of demo shards (default 3)")
    j.add_argument("--dir", default=JOIN_DIR, help=f"folder for your key, the CA and logs (default {JOIN_DIR}/)")
    j.add_argument("--once", action="store_true", help="leave after the room's next run ends")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fedlab workshop ...``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if not flower_available():
        print(not_flower_message(), file=sys.stderr)
        return 2
    _sigterm_as_exit()

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        if args.workshop_command == "serve":
            return serve(
                address=args.address, port=args.port, enrol_port=args.enrol_port, folder=args.dir,
                rounds=args.rounds, local_epochs=args.local_epochs, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed, model=args.model, min_nodes=args.min_nodes, round_timeout=args.round_timeout,
                fraction_evaluate=args.fraction_evaluate, min_participants=args.min_participants,
                once=args.once, app=args.app, out=out,
            )
        if args.data is not None and args.demo_shard is not None:
            raise ValueError(f"--data={args.data!r} and --demo-shard={args.demo_shard}: give one of them")
        return join(
            args.address, token=args.token, pin=args.pin, name=args.name, data=args.data,
            demo_shard=args.demo_shard, demo_shards=args.demo_shards, folder=args.dir, once=args.once, out=out,
        )
    except ValueError as err:
        print(f"workshop {args.workshop_command}: error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, FileNotFoundError) as err:
        print(f"workshop {args.workshop_command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

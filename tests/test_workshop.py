"""The live room federation (``python -m fedlab workshop serve|join``) on loopback, in separate processes.

Runs in the course environment (flwr is in requirements.lock; part of
``make test``): without flwr every test here fails (never skips). Every wait is bounded (hang guards only, no
timing asserts); every process started here is stopped, and the tests check
that none is left behind.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from fedlab import workshop
from fedlab import workshop_enrol as enrol
from fedlab.flower import core

pytestmark = pytest.mark.flower


@pytest.fixture(autouse=True, scope="module")
def _flower_installed():
    """flwr is required: without it every test here fails (never skips).

    Imported here, not at module top, so that a run with ``-m "not flower"``
    can still collect and deselect this file.
    """
    try:
        import flwr  # noqa: F401
    except ImportError:
        pytest.fail("flwr is not installed in this Python: run these tests in the course environment (make test)")

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]


class Proc:
    """A child process whose merged output is collected line by line in a thread."""

    def __init__(self, argv, *, cwd):
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.p.poll() is not None and not self._t.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n{self.text[-4000:]}")

    def wait(self, timeout: float) -> int:
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout}s (hang guard); output:\n{self.text[-4000:]}") from None
        self._t.join(timeout=10)
        return rc

    def kill(self):
        """SIGKILL the process and every descendant (a laptop whose lid was shut)."""
        try:
            procs = [psutil.Process(self.p.pid), *psutil.Process(self.p.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for q in procs:
            try:
                q.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.p.wait(timeout=10)


def leftovers(marker: str) -> list[str]:
    """Processes whose command line mentions ``marker`` (the test's temporary folder)."""
    found = []
    for q in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if q.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(q.info["cmdline"] or []):
                found.append(f"{q.info['pid']}: {' '.join(q.info['cmdline'])[:200]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def no_leftovers(marker: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while leftovers(marker) and time.monotonic() < end:
        time.sleep(0.5)
    assert leftovers(marker) == []


def start_room(folder: Path, *, rounds: int, min_participants: int, round_timeout: float, min_nodes: int = 2):
    port = enrol.free_port()
    enrol_port = enrol.free_port()
    serve = Proc([PY, "-m", "fedlab", "workshop", "serve", "--address", "127.0.0.1", "--port", str(port),
                  "--enrol-port", str(enrol_port), "--dir", str(folder / "room"), "--rounds", str(rounds),
                  "--min-participants", str(min_participants), "--min-nodes", str(min_nodes),
                  "--round-timeout", str(round_timeout), "--local-epochs", "1", "--once"], cwd=folder)
    serve.wait_for(r"waiting for participants", timeout=120)
    info = json.loads((folder / "room" / "room.json").read_text())
    return serve, info


def join_argv(info, *, k: int, folder: Path, token: str | None = None, pin: str | None = None):
    return [PY, "-m", "fedlab", "workshop", "join", info["join"], "--token", token or info["token"],
            "--pin", pin or info["pin"], "--name", f"p{k}", "--demo-shard", str(k), "--demo-shards", "3",
            "--dir", str(folder / f"p{k}"), "--once"]


def progress(folder: Path, run: int = 1) -> tuple[list[dict], dict | None]:
    rounds, done = [], None
    for line in (folder / "room" / f"run-{run}.log").read_text().splitlines():
        parsed = core.parse_line(line)
        if parsed and parsed[0] == "ROUND":
            rounds.append(parsed[1])
        elif parsed and parsed[0] == "DONE":
            done = parsed[1]
    return rounds, done


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """One room for three participants, three rounds; the refusal tests run while it waits for them."""
    folder = tmp_path_factory.mktemp("room")
    serve, info = start_room(folder, rounds=3, min_participants=3, round_timeout=120)
    try:
        yield serve, info, folder
    finally:
        if serve.p.poll() is None:
            serve.kill()
        no_leftovers(str(folder))


# ---- refusals ---------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_wrong_token_is_refused_at_enrolment(room):
    serve, info, folder = room
    wrong = enrol.new_token()
    while enrol.normalize_token(wrong) == enrol.normalize_token(info["token"]):
        wrong = enrol.new_token()
    j = Proc(join_argv(info, k=0, folder=folder / "wrong", token=wrong), cwd=folder)
    assert j.wait(timeout=60) == workshop.EXIT_REFUSED_ENROLMENT
    assert "wrong room token" in j.text
    assert "TRUSTED ROOM NETWORK ONLY" in j.text  # the open-SuperLink warning is shown at join time
    serve.wait_for(r"refused: .*wrong token", timeout=10)
    # a pin that does not match the room's CA is refused before anything is sent
    other_pin = enrol.ca_pin(enrol.make_certificates(folder / "other-ca", "127.0.0.1").ca.read_bytes())
    j = Proc(join_argv(info, k=0, folder=folder / "wrong", pin=other_pin), cwd=folder)
    assert j.wait(timeout=60) == workshop.EXIT_REFUSED_ENROLMENT
    assert "not the pin" in j.text
    # a malformed token is an argument error naming the value
    j = Proc(join_argv(info, k=0, folder=folder / "wrong", token="nope"), cwd=folder)
    assert j.wait(timeout=60) == 2
    assert "token='nope'" in j.text


@pytest.mark.timeout(180)
def test_unregistered_key_is_refused_by_the_superlink(room):
    serve, info, folder = room
    mine = folder / "intruder"
    mine.mkdir()
    ca = mine / "ca.pem"
    ca.write_bytes(enrol.fetch_ca(info["join"], info["pin"]))  # the intruder even has the right CA
    key = mine / "node.key"
    enrol.new_node_key(key)  # ... but its key was never registered
    data_file = workshop.prepare_data(mine, demo=(0, 3))
    said = []
    rc = workshop.run_node(superlink=info["superlink"], ca=ca, key=key, data_file=data_file, folder=mine,
                           out=said.append)
    assert rc == workshop.EXIT_REFUSED_SUPERLINK, said
    assert "not registered" in "\n".join(said)
    assert "Exit Code: 305" in (mine / "supernode.log").read_text()


# ---- three participants, three rounds ----------------------------------------------------------------


@pytest.mark.timeout(420)
def test_three_participants_complete_three_rounds(room):
    serve, info, folder = room
    joins = [Proc(join_argv(info, k=k, folder=folder), cwd=folder) for k in range(3)]
    try:
        assert serve.wait(timeout=300) == 0, serve.text[-3000:]
        for j in joins:
            assert j.wait(timeout=60) == 0, j.text[-2000:]
    finally:
        for j in joins:
            if j.p.poll() is None:
                j.kill()
    rounds, done = progress(folder)
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["status"] == "aggregated" and r["replies"] == 3 for r in rounds), rounds
    assert done is not None and done["status"] == "ok"
    assert rounds[-1]["accuracy"] > 0.5  # a sanity floor: three digit shards, three rounds of logreg
    names = {m.group(1) for m in map(re.compile(r"enrolled: (\S+)").search, serve.lines) if m}
    assert names == {"p0", "p1", "p2"}
    assert "round 3: accuracy" in serve.text
    for j in joins:  # each participant saw the room's rounds and its own update in them
        assert "round 3: room accuracy" in j.text and "your update was in it" in j.text
    no_leftovers(str(folder))


# ---- a participant disappears mid-round --------------------------------------------------------------


@pytest.mark.timeout(420)
def test_killing_a_participant_mid_round_does_not_hang_the_room(tmp_path):
    serve, info = start_room(tmp_path, rounds=2, min_participants=3, round_timeout=45, min_nodes=2)
    joins = [Proc(join_argv(info, k=k, folder=tmp_path), cwd=tmp_path) for k in range(3)]
    try:
        serve.wait_for(r"round 1: accuracy", timeout=240)
        joins[2].kill()  # round 2's messages are out: p2 is gone mid-round, with all its processes
        assert serve.wait(timeout=240) == 0, serve.text[-3000:]
        for j in joins[:2]:
            assert j.wait(timeout=60) == 0, j.text[-2000:]
    finally:
        for j in joins:
            if j.p.poll() is None:
                j.kill()
        if serve.p.poll() is None:
            serve.kill()
    rounds, done = progress(tmp_path)
    assert [r["round"] for r in rounds] == [1, 2]
    node_of = {}
    for line in serve.lines:
        m = re.search(r"enrolled: (\S+) \(node (\d+)", line)
        if m:
            node_of[m.group(1)] = int(m.group(2))
    assert rounds[1]["status"] == "aggregated" and rounds[1]["replies"] >= 2
    assert node_of["p2"] not in rounds[1]["node_ids"]
    assert done is not None and done["status"] == "ok"
    no_leftovers(str(tmp_path))


# ---- pieces, without Flower processes --------------------------------------------------------------


def test_tokens_pins_and_names_give_clear_errors():
    token = enrol.new_token()
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", token)
    assert enrol.normalize_token(token.lower().replace("-", " ")) == token.replace("-", "")
    for bad in ("", "ABCD", "ABCD-EFG0", 12345678):
        with pytest.raises(ValueError, match="token="):
            enrol.normalize_token(bad)
    with pytest.raises(ValueError, match="name='a b'"):
        enrol.check_name("a b")
    with pytest.raises(ValueError, match="address='nowhere'"):
        enrol.split_address("nowhere")
    assert enrol.split_address("[::1]:9093") == ("::1", 9093)
    with pytest.raises(ValueError, match="pin="):
        enrol.normalize_pin("ABCD")


def test_registry_refuses_wrong_tokens_and_bad_keys(tmp_path):
    events = []
    registered = []
    reg = enrol.Registry("K7QM-4XPA", superlink="127.0.0.1:1", on_event=lambda kind, **f: events.append(kind),
                         register=lambda name, key: registered.append(name) or 1000 + len(registered))
    public = enrol.new_node_key(tmp_path / "k.key")
    assert reg.enrol("a", {"token": "k7qm4xpa", "name": "ada", "public_key": public})[0] == 200
    status, body = reg.enrol("a", {"token": "k7qm4xpa", "name": "ada", "public_key": public})
    assert status == 200 and body["name"] == "ada-2"  # display names stay unique
    assert reg.enrol("b", {"token": "AAAA-AAAA", "name": "eve", "public_key": public})[0] == 403
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"
    assert reg.enrol("a", {"token": "K7QM-4XPA", "name": "bob", "public_key": rsa})[0] == 400
    for _ in range(enrol.MAX_BAD_TOKENS):
        reg.enrol("c", {"token": "AAAA-AAAA", "name": "eve", "public_key": public})
    status, body = reg.enrol("c", {"token": "K7QM-4XPA", "name": "eve", "public_key": public})
    assert status == 429 and "too many" in body["error"]
    assert registered == ["ada", "ada-2"]
    assert events.count("enrolled") == 2


def test_certificate_names_the_room_address_and_keys_are_what_flower_reads(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    certs = enrol.make_certificates(tmp_path, "192.168.7.20")
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "192.168.7.20" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert oct(certs.key.stat().st_mode & 0o777) == "0o600"
    line = enrol.new_node_key(tmp_path / "node.key")
    assert line.startswith("ecdsa-sha2-nistp384 ")
    key = serialization.load_ssh_private_key((tmp_path / "node.key").read_bytes(), None)  # as flower-supernode does
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert len(enrol.normalize_pin(enrol.ca_pin(certs.ca.read_bytes()))) == 26


def test_data_for_a_participant(tmp_path):
    x = np.zeros((4, 64), np.float32)
    y = np.array([0, 1, 2, 3])
    path = workshop.prepare_data(tmp_path, (x, y))
    assert path.is_absolute() and path.is_file()
    assert workshop.prepare_data(tmp_path, str(path)) == path
    with pytest.raises(ValueError, match="exactly one"):
        workshop.prepare_data(tmp_path, None)
    with pytest.raises(ValueError, match="demo_shard=5"):
        workshop.prepare_data(tmp_path, demo=(5, 3))
    with pytest.raises(ValueError, match=r"x has shape \(4, 63\)"):
        workshop.prepare_data(tmp_path, (np.zeros((4, 63)), y))


def test_a_python_without_flwr_is_told_to_use_the_course_env(monkeypatch, capsys):
    from fedlab import __main__

    monkeypatch.setattr(workshop, "flower_available", lambda: False)
    assert __main__.main(["workshop", "serve"]) == 2
    err = capsys.readouterr().err
    assert ".venv/bin/python -m fedlab workshop" in err


# ---- the drawing pad ---------------------------------------------------------------------------------


def test_digit_features_count_on_pixels_per_block_like_the_uci_digits():
    from fedlab.widgets.digit_pad import rasterize, to_digit

    assert np.array_equal(to_digit(np.ones((32, 32), bool)), np.ones(64, np.float32))  # 16 of 16 per block
    one_block = np.zeros((32, 32), bool)
    one_block[4:8, 0:4] = True
    want = np.zeros(64, np.float32)
    want[8] = 1.0
    assert np.array_equal(to_digit(one_block), want)
    assert not rasterize([]).any()
    with pytest.raises(ValueError, match="bitmap has shape"):
        to_digit(np.ones((8, 8)))


def test_drawn_digits_look_like_the_shipped_ones_to_a_nearest_mean_classifier():
    from fedlab.data import load_digits
    from fedlab.widgets.digit_pad import rasterize, to_digit

    d = load_digits()
    means = np.stack([d.x[d.y == c].mean(axis=0) for c in range(10)])
    t = np.linspace(0, 2 * np.pi, 60)
    drawings = {
        0: [[(100 + 40 * np.cos(a), 120 + 70 * np.sin(a)) for a in t]],
        1: [[(120, 40), (120, 200)]],
        7: [[(60, 40), (180, 40), (100, 200)]],
    }
    for label, strokes in drawings.items():
        f = to_digit(rasterize(strokes))
        assert int(np.argmin(((means - f) ** 2).sum(axis=1))) == label


def test_digit_pad_records_strokes_and_saves_what_a_supernode_reads(tmp_path):
    from fedlab.widgets.digit_pad import DigitPad

    pad = DigitPad()
    with pytest.raises(ValueError, match="no digits yet"):
        pad.data()
    for label in (1, 1, 7):
        pad._down(120, 40)
        pad._move(120, 120)
        pad._move(121, 200)
        pad._up(121, 200)
        pad.add(label)
    pad.add(3)  # nothing drawn: refused on the pad, nothing added
    assert "Nothing drawn" in pad.status.value
    pad.remove_last()
    x, y = pad.data()
    assert x.shape == (2, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [1, 1]
    path = workshop.prepare_data(tmp_path, pad)  # what join(data=pad) does
    assert np.array_equal(core.load_data_file(path)[0], x)
    assert core.load_data_file(pad.save(tmp_path / "mine.npz"))[1].tolist() == [1, 1]

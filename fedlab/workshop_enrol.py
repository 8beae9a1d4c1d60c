"""Enrolment for the live room federation: room token, CA pin, keys, certificates.

Flower 1.42's own model for admitting laptops to a federation is: the
SuperLink runs with TLS and ``--enable-supernode-auth``; every SuperNode has
an ECDSA key pair (a NIST curve, OpenSSH format) and starts with
``--auth-supernode-private-key``; an operator registers each SuperNode's
*public* key with ``flwr supernode register KEY.pub CONNECTION``; the
SuperLink refuses any SuperNode whose key is not registered (exit code 305 on
the SuperNode's side).

This module wraps that so that joining is one step for a participant:

* the instructor's ``serve`` makes a small certificate authority (CA) and a
  server certificate whose subjectAltName is the room address, a short
  **room token** (``ABCD-EFGH``, about 40 bits from :mod:`secrets`) and the
  CA's **pin** (the first 128 bits of the SHA-256 of the CA certificate);
* ``serve`` runs a tiny HTTPS **enrolment endpoint** (this module's
  :func:`make_server`), with the same server certificate, beside the
  SuperLink;
* ``join`` fetches the CA certificate, accepts it only if its pin matches
  the join line, makes a fresh P-384 key on the laptop, and sends the public
  key with the token over TLS verified against that CA; the endpoint checks
  the token (constant-time) and registers the key with
  ``flwr supernode register``; the private key never leaves the laptop.

A wrong token is refused by the endpoint (HTTP 403; ten wrong tokens from one
address block it); a key that was never registered is refused by the SuperLink
itself. What the token does *not* do is protect the SuperLink's Control API,
which in 1.42 shares the port the SuperNodes use and has no login: see
:data:`fedlab.workshop.OPEN_SUPERLINK_WARNING`.

Only :mod:`cryptography` and the standard library are used here; Flower is
started as a separate program.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TOKEN_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""Room-token letters: no 0/O, 1/I/L, so a token read off a projector is typed right."""

TOKEN_LENGTH = 8
MAX_BAD_TOKENS = 10
"""Wrong tokens accepted from one client address before it is refused for the rest of the room."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,23}$")
NAME_RULE = "1-24 letters, digits, '_', '.' or '-', starting with a letter or digit"
MAX_BODY = 16_384


# ----------------------------------------------------------------------------
# Tokens, pins, addresses
# ----------------------------------------------------------------------------


def new_token() -> str:
    """A fresh room token such as ``"K7QM-4XPA"`` (about 40 bits, from :mod:`secrets`)."""
    raw = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_token(token: str) -> str:
    """Upper-case ``token`` and drop spaces and dashes; raise if it cannot be a room token."""
    if not isinstance(token, str):
        raise ValueError(f"token={token!r}: must be a string such as 'K7QM-4XPA'")
    text = re.sub(r"[\s-]", "", token).upper()
    if len(text) != TOKEN_LENGTH or any(c not in TOKEN_ALPHABET for c in text):
        raise ValueError(
            f"token={token!r}: must be {TOKEN_LENGTH} characters from {TOKEN_ALPHABET} "
            "(dashes and case do not matter), as printed by `workshop serve`"
        )
    return text


def ca_pin(ca_pem: bytes) -> str:
    """The pin of a CA certificate: base32 of the first 128 bits of SHA-256 of its DER bytes.

    Printed in groups of four (``"ABCD-EFGH-..."``, 26 characters); 128 bits make
    a second certificate with the same pin out of reach.
    """
    der = x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)
    text = base64.b32encode(hashlib.sha256(der).digest()[:16]).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def normalize_pin(pin: str) -> str:
    """Upper-case ``pin`` and drop spaces and dashes; raise if it is not a 26-character base32 pin."""
    if not isinstance(pin, str):
        raise ValueError(f"pin={pin!r}: must be a string such as 'ABCD-EFGH-...' printed by `workshop serve`")
    text = re.sub(r"[\s-]", "", pin).upper()
    if len(text) != 26 or not re.fullmatch(r"[A-Z2-7]+", text):
        raise ValueError(f"pin={pin!r}: must be the 26-character base32 CA pin printed by `workshop serve`")
    return text


def split_address(address: str, *, name: str = "address") -> tuple[str, int]:
    """Split ``"HOST:PORT"`` (IPv6 as ``"[::1]:PORT"``) into ``(host, port)``."""
    if not isinstance(address, str):
        raise ValueError(f"{name}={address!r}: must be a string HOST:PORT, e.g. 192.168.1.10:9093")
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([A-Za-z0-9.-]+):(\d+)", address.strip())
    if not match:
        raise ValueError(f"{name}={address!r}: must be HOST:PORT, e.g. 192.168.1.10:9093 (IPv6: [fe80::1]:9093)")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"{name}={address!r}: port {port} must be in 1..65535")
    return host, port


def join_address(host: str, port: int) -> str:
    """``HOST:PORT``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def lan_address() -> str:
    """The machine's address on its default route, or ``127.0.0.1`` when there is none.

    A UDP ``connect`` sends no packet; it only asks the kernel which local
    address it would use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return sock.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------
# Keys and certificates
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomCertificates:
    """Paths of the room's TLS files: CA certificate, server certificate and its key (PEM)."""

    ca: Path
    cert: Path
    key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def make_certificates(folder: str | os.PathLike, host: str, *, days: int = 2) -> RoomCertificates:
    """Make a CA and a server certificate for ``host`` in ``folder`` (``ca.pem``, ``server.pem``, ``server.key``).

    The server certificate's subjectAltName holds ``host`` (as an IP address
    when it is one, else a DNS name) plus ``127.0.0.1`` and ``localhost``, so
    the instructor's own tools reach it on loopback too. Keys are ECDSA P-384,
    valid ``days`` days; the CA's private key is not written anywhere (nothing
    else will ever be signed with it).
    """
    if not isinstance(host, str) or not host:
        raise ValueError(f"host={host!r}: must be an IP address or host name")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=10), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"fedlab workshop CA {now:%Y-%m-%d %H:%M}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for item in dict.fromkeys([host, "127.0.0.1", "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(item)))
        except ValueError:
            names.append(x509.DNSName(item))
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = RoomCertificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        files.key,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return files


def new_node_key(path: str | os.PathLike) -> str:
    """Write a fresh SuperNode key (ECDSA P-384, OpenSSH format, mode 0600) to ``path``.

    This is what ``ssh-keygen -t ecdsa -b 384 -N ''`` makes and what
    ``flower-supernode --auth-supernode-private-key`` reads. The public key is
    also written to ``path + ".pub"`` and returned as its OpenSSH line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    openssh = serialization.PrivateFormat.OpenSSH
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, openssh, serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    Path(f"{path}.pub").write_bytes(public + b"\n")
    return public.decode("ascii")


def check_public_key(text: str) -> str:
    """Return ``text`` stripped if it is an OpenSSH ECDSA public key on a NIST curve (what Flower accepts)."""
    if not isinstance(text, str) or len(text) > 2000:
        raise ValueError("public_key: must be one OpenSSH line such as 'ecdsa-sha2-nistp384 AAAA...'")
    line = text.strip()
    try:
        key = serialization.load_ssh_public_key(line.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as err:
        raise ValueError(f"public_key: not an OpenSSH public key ({err})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise ValueError("public_key: must be ECDSA on a NIST curve (e.g. ssh-keygen -t ecdsa -b 384)")
    return line


def check_name(name: str) -> str:
    """Return ``name`` if it is a fine display name (:data:`NAME_RULE`)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"name={name!r}: must be {NAME_RULE}")
    return name


# ----------------------------------------------------------------------------
# The enrolment endpoint (instructor side)
# ----------------------------------------------------------------------------


class Registry:
    """Thread-safe record of a room's enrolments, checked tokens and refusals.

    ``register(name, public_key_line) -> node_id`` is the function that really
    registers the key with the SuperLink (``flwr supernode register``);
    ``on_event(kind, **fields)`` is called for the dashboard.
    """

    def __init__(
        self,
        token: str,
        *,
        superlink: str,
        register: Callable[[str, str], int],
        on_event: Callable[..., None] = lambda kind, **fields: None,
        status: Callable[[], dict] = dict,
    ) -> None:
        self.token = normalize_token(token)
        self.superlink = superlink
        self.register = register
        self.on_event = on_event
        self.status = status
        self.participants: dict[str, int] = {}
        self._bad: dict[str, int] = {}
        self._lock = threading.Lock()

    def token_ok(self, client: str, token) -> tuple[bool, str]:
        """Check a presented token; count failures per client address."""
        with self._lock:
            if self._bad.get(client, 0) >= MAX_BAD_TOKENS:
                return False, f"too many wrong tokens from {client}: ask the instructor"
        try:
            ok = hmac.compare_digest(normalize_token(token).encode(), self.token.encode())
        except ValueError:
            ok = False
        if not ok:
            with self._lock:
                self._bad[client] = self._bad.get(client, 0) + 1
            self.on_event("refused", client=client, reason="wrong token")
            return False, "wrong room token: check the join line on the instructor's screen"
        return True, ""

    def enrol(self, client: str, body: dict) -> tuple[int, dict]:
        """Handle one enrolment request; returns ``(http_status, json_body)``."""
        ok, why = self.token_ok(client, body.get("token"))
        if not ok:
            return (429 if "too many" in why else 403), {"error": why}
        try:
            name = check_name(body.get("name"))
            public_key = check_public_key(body.get("public_key"))
        except ValueError as err:
            return 400, {"error": str(err)}
        with self._lock:  # reserve a unique display name; registrations run side by side
            unique, k = name, 2
            while unique in self.participants:
                unique, k = f"{name}-{k}", k + 1
            self.participants[unique] = -1
        try:
            node_id = int(self.register(unique, public_key))
        except Exception as err:  # noqa: BLE001 - reported to the participant and the dashboard
            with self._lock:
                del self.participants[unique]
            self.on_event("refused", client=client, reason=f"registration failed: {err}")
            return 500, {"error": f"the SuperLink did not register the key: {err}"}
        with self._lock:
            self.participants[unique] = node_id
        self.on_event("enrolled", client=client, name=unique, node_id=node_id)
        return 200, {"name": unique, "node_id": node_id, "superlink": self.superlink}


def make_server(
    registry: Registry, *, host: str, port: int, certificates: RoomCertificates
) -> ThreadingHTTPServer:
    """The HTTPS enrolment endpoint; call ``serve_forever()`` in a thread, ``shutdown()`` to stop.

    ``GET /ca.pem`` returns the CA certificate (a participant checks its pin);
    ``POST /enrol`` with JSON ``{token, name, public_key}`` registers the key
    and answers ``{name, node_id, superlink}``; ``GET /status`` with header
    ``X-Room-Token`` answers the room's state (``registry.status()``).
    """
    ca_pem = certificates.ca.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "fedlab-workshop"
        sys_version = ""

        def log_message(self, fmt, *args):  # quiet: the dashboard reports what matters
            return

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: dict) -> None:
            self._send(status, json.dumps(obj).encode())

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path == "/ca.pem":
                self._send(200, ca_pem, "application/x-pem-file")
            elif self.path == "/status":
                ok, why = registry.token_ok(self.client_address[0], self.headers.get("X-Room-Token", ""))
                if ok:
                    self._json(200, registry.status())
                else:
                    self._json(403, {"error": why})
            else:
                self._json(404, {"error": f"no such path {self.path!r}: use /ca.pem, /enrol, /status"})

        def do_POST(self):  # noqa: N802
            if self.path != "/enrol":
                self._json(404, {"error": f"no such path {self.path!r}: POST /enrol"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 < length <= MAX_BODY:
                    raise ValueError(f"body of {length} bytes: must be 1..{MAX_BODY}")
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
            except (ValueError, json.JSONDecodeError) as err:
                self._json(400, {"error": f"bad request: {err}"})
                return
            status, answer = registry.enrol(self.client_address[0], body)
            self._json(status, answer)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    server = Server((host, port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificates.cert, certificates.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


# ----------------------------------------------------------------------------
# The participant's side
# ----------------------------------------------------------------------------


class EnrolmentError(RuntimeError):
    """The room refused or could not be reached; the message says which and what to do."""


def _request(
    address: str, method: str, path: str, *, context: ssl.SSLContext, body: dict | None = None,
    headers: dict | None = None, timeout: float = 30.0,
) -> tuple[int, bytes]:
    import http.client

    host, port = split_address(address)
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.read(MAX_BODY * 4)
    finally:
        conn.close()


def fetch_ca(address: str, pin: str, *, timeout: float = 10.0) -> bytes:
    """Fetch the room's CA certificate from ``address`` and return it only if its pin matches ``pin``.

    The first connection cannot verify the server (the participant does not
    have the CA yet): the pin from the join line is what makes the CA
    trustworthy. Every later connection is verified against it.
    """
    want = normalize_pin(pin)
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        status, pem = _request(address, "GET", "/ca.pem", context=insecure, timeout=timeout)
    except OSError as err:
        raise EnrolmentError(
            f"cannot reach the room at {address} ({err}). Check the address on the instructor's screen, "
            "that `workshop serve` is running, and that you are on the same network."
        ) from None
    if status != 200:
        raise EnrolmentError(f"{address} answered {status} for the CA certificate: is it a fedlab workshop room?")
    try:
        got = normalize_pin(ca_pin(pem))
    except ValueError:
        raise EnrolmentError(f"{address} sent something that is not a certificate: is it a fedlab workshop room?") \
            from None
    if not hmac.compare_digest(got, want):
        raise EnrolmentError(
            f"the room at {address} presented a CA certificate with pin {ca_pin(pem)}, not the pin {pin} of "
            "your join line: refusing to join (a typo in the pin, or someone else's server)."
        )
    return pem


def verified_context(ca_pem: bytes) -> ssl.SSLContext:
    """A TLS client context that trusts only the room's CA (and checks the host name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    return context


def enrol(address: str, ca_pem: bytes, *, token: str, name: str, public_key: str, timeout: float = 60.0) -> dict:
    """Send the public key and token to the room; return ``{name, node_id, superlink}`` or raise EnrolmentError."""
    body = {"token": normalize_token(token), "name": check_name(name), "public_key": check_public_key(public_key)}
    try:
        status, raw = _request(address, "POST", "/enrol", context=verified_context(ca_pem), body=body, timeout=timeout)
    except ssl.SSLError as err:
        raise EnrolmentError(f"TLS check of {address} failed ({err}): the room's certificate does not match") from None
    except OSError as err:
        raise EnrolmentError(f"cannot reach the room at {address} ({err})") from None
    try:
        answer = json.loads(raw)
    except json.JSONDecodeError:
        answer = {"error": raw[:200].decode("utf-8", "replace")}
    if status != 200:
        raise EnrolmentError(f"the room refused to enrol you: {answer.get('error', status)}")
    return answer


def room_status(address: str, ca_pem: bytes, *, token: str, timeout: float = 10.0) -> dict:
    """The room's state as the instructor's ``serve`` reports it (raises OSError if unreachable)."""
    status, raw = _request(
        address, "GET", "/status", context=verified_context(ca_pem),
        headers={"X-Room-Token": normalize_token(token)}, timeout=timeout,
    )
    if status != 200:
        raise EnrolmentError(f"room status refused ({status}): {raw[:200]!r}")
    return json.loads(raw)

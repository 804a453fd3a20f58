"""A stock OCI registry for the tests: CNCF distribution (Debian's docker-registry), started on a free port.

Three ways: open; with htpasswd (Basic) auth; with token auth, whose token service is a small aiohttp app here that
signs RS256 JWTs with a self-signed certificate the registry trusts (the registry checks signature, issuer, audience
and the access each token grants). The registry is the real thing; only the token service is ours.
"""

from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.conftest import free_port
from tests.fakes.threaded import serve_in_thread

USER, PASSWORD = "pusher", "s3cret-pw"
SERVICE, ISSUER = "test-registry", "test-token-issuer"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    auth: str  # "", "basic" or "token"
    directory: Path  # where it stores (blobs under data/docker/registry/v2/blobs)
    token_requests: list[str] = field(default_factory=list)  # scopes the token service was asked for

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """Issues the registry's bearer tokens: Basic USER:PASSWORD gets pull and push; anyone else pull only."""

    def __init__(self, directory: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_file = directory / "token-cert.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.scopes: list[str] = []

    def _sign(self, access: list[dict[str, object]]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": uuid.uuid4().hex, "access": access,
        }  # fmt: skip
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64(signature)}"

    async def token(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        given = request.headers.get("Authorization")
        if given is not None and given != expected:
            return web.json_response({"details": "wrong login"}, status=401)
        access: list[dict[str, object]] = []
        for scope in request.query.getall("scope", []):
            self.scopes.append(scope)
            kind, name, actions = scope.split(":")
            allowed = actions.split(",") if given == expected else [a for a in actions.split(",") if a == "pull"]
            access.append({"type": kind, "name": name, "actions": allowed})
        return web.json_response({"token": self._sign(access), "expires_in": 300})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        return app


@contextmanager
def run_registry(directory: Path, auth: str = "") -> Iterator[Registry]:
    """A registry storing under `directory`, with `auth` "" (open), "basic" (htpasswd) or "token"."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed: scripts/ensure-registry.sh installs it (make test runs it)"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log: {level: error, accesslog: {disabled: true}}",
        f"storage: {{filesystem: {{rootdirectory: {directory / 'data'}}}, delete: {{enabled: true}}}}",
        f"http: {{addr: '127.0.0.1:{port}', secret: test-secret}}",
    ]
    with ExitStack() as stack:
        service = None
        if auth == "basic":
            htpasswd = directory / "htpasswd"
            out = subprocess.run(
                ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
            ).stdout
            htpasswd.write_text(out)
            lines.append(f"auth: {{htpasswd: {{realm: test-realm, path: {htpasswd}}}}}")
        elif auth == "token":
            service = TokenService(directory)
            token_url = stack.enter_context(serve_in_thread(service.app()))
            lines.append(
                f"auth: {{token: {{realm: '{token_url}/token', service: {SERVICE}, issuer: {ISSUER}, "
                f"rootcertbundle: {service.cert_file}}}}}"
            )
        config = directory / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        log = (directory / "registry.log").open("wb")
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                    break
                except urllib.error.HTTPError:
                    break  # 401: up, and asking for auth
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(
                            f"docker-registry did not start: {(directory / 'registry.log').read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.05)
            registry = Registry(f"127.0.0.1:{port}", auth, directory)
            if service is not None:
                registry.token_requests = service.scopes
            yield registry
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()

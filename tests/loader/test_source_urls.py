"""What a requested name can make the loader fetch: names are checked before any URL is made of them (an escaped
'.' or '/' never reaches a registry), every registry URL stays under its /v2/, and redirects are few, never to
another scheme nor from https down to http, and never carry credentials to another origin."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from model_manager.core.errors import InvalidArgument
from model_manager.loader.errors import PermanentError
from model_manager.loader.sources.base import stream_http
from model_manager.loader.sources.ollama import OllamaSource
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.service.models import ModelsService
from tests.fakes.hub import Hub
from tests.fakes.ollama import Registry
from tests.helpers import HF, OLLAMA, WHO, Api
from tests.loader.conftest import Harness, _serve
from tests.loader.test_ollama_s3_failures import _gemma
from tests.loader.test_source_check import _probe

HOSTILE_OLLAMA = [
    "a/%2e%2e/%2e%2e/%2e%2e/admin/secret:t",  # decoded by the URL library into /admin/secret/manifests/t
    "a%2Fb:t",
    "..:t",
    "a/b/c/d:t",
    "ns/model:t/../../x",
    "ns/model:%2e%2e",
]


async def test_hostile_names_are_refused_before_any_url_is_made(
    lctx: ServiceContext, api: Api, hub: Hub, registry: tuple[Registry, str]
) -> None:
    reg, url = registry
    probe = _probe(url, hub)
    service = ModelsService(lctx, probe)
    try:
        for name in HOSTILE_OLLAMA:
            with pytest.raises(InvalidArgument, match=r"is not an Ollama id|path segments"):
                await service.create_model(WHO, pb.CreateModelRequest(id=name, source_repository=OLLAMA))
        for name in ("a%2e/b", "org/na%2Fme", "org/..", "-org/name"):
            with pytest.raises(InvalidArgument, match=r"a Hugging Face repo id is letters|path segments"):
                await service.create_model(WHO, pb.CreateModelRequest(id=name, source_repository=HF))
    finally:
        await probe.close()
    assert reg.requested == []
    assert (await api.list(include_loading_models=True)).data == []


async def test_a_source_made_with_a_hostile_name_refuses_itself(registry: tuple[Registry, str]) -> None:
    """The loader does not take the server's check on trust: the same names fail where URLs are made."""
    reg, url = registry
    async with aiohttp.ClientSession() as http:
        for name in HOSTILE_OLLAMA:
            with pytest.raises(PermanentError, match=r"is not an Ollama id|path segments"):
                await OllamaSource(http, url, name).list_files()
    assert reg.requested == []


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("/hop/{n}", "more than 5 redirects"),
        ("file:///etc/passwd", "refused a redirect from http to file"),
        ("ftp://127.0.0.1/blob", "refused a redirect from http to ftp"),
    ],
)
async def test_a_blob_redirected_too_often_or_to_another_scheme_fails_the_load(
    harness: Harness, api: Api, registry: tuple[Registry, str], target: str, problem: str
) -> None:
    reg, _ = registry
    reg.add("library", "gemma", "2b", _gemma())
    reg.blob_redirect = target
    await api.request_base("gemma:2b", OLLAMA)
    await harness.drain()
    failed = await api.get("gemma:2b")
    assert failed.loading_status == pb.ModelLoadingStatus.FAILED
    assert problem in failed.loading_failure_reason
    assert len([p for p in reg.requested if p.startswith("/hop/")]) <= 5 * 4  # at most five hops per blob


# ---- TLS: a redirect from https down to http, credentials across origins --------------------------------------


def _self_signed(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for 127.0.0.1 and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return server, ssl.create_default_context(cafile=str(tmp / "cert.pem"))


class Target:
    """Where the redirects lead: answers with the Authorization header it received."""

    def __init__(self) -> None:
        self.authorization: list[str | None] = []

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.authorization.append(request.headers.get("Authorization"))
            return web.Response(body=b"the bytes")

        app = web.Application()
        app.router.add_get("/file", handle)
        return app


async def _redirector(to: str, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(to)

    app = web.Application()
    app.router.add_get("/file", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


async def _read(http: aiohttp.ClientSession, url: str) -> bytes:
    data = b""
    async for chunk in stream_http(http, url, "file", {"Authorization": "Bearer hf_secret"}):
        data += chunk
    return data


@pytest.fixture
async def target() -> AsyncIterator[tuple[Target, str]]:
    t = Target()
    runner, url = await _serve(t.app())
    yield t, url
    await runner.cleanup()


async def test_https_is_never_followed_down_to_http(tmp_path: Path, target: tuple[Target, str]) -> None:
    server_tls, client_tls = _self_signed(tmp_path)
    seen, plain = target
    runner, url = await _redirector(f"{plain}/file", server_tls)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls)) as http:
            with pytest.raises(PermanentError, match="refused a redirect from https to http"):
                await _read(http, f"{url}/file")
    finally:
        await runner.cleanup()
    assert seen.authorization == []  # nothing was sent in the clear


async def test_credentials_go_to_the_first_origin_only(target: tuple[Target, str]) -> None:
    seen, plain = target
    runner, url = await _redirector(f"{plain}/file")  # another port: another origin, as the Hub's CDN is
    try:
        async with aiohttp.ClientSession() as http:
            assert await _read(http, f"{url}/file") == b"the bytes"
            assert await _read(http, f"{plain}/file") == b"the bytes"  # no redirect: the header is sent
    finally:
        await runner.cleanup()
    assert seen.authorization == [None, "Bearer hf_secret"]

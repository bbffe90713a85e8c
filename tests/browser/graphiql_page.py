"""Driving GraphiQL the way a person does: clicks and typing into its editors.

GraphiQL's editors are CodeMirror instances; text is typed with the keyboard (CodeMirror
closes brackets and quotes itself, and typing the closing one steps over it, so the typed
text ends up as written). Results are read back from the result pane's editor.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from playwright.async_api import Page

RESULT_TEXT = "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"


async def open_graphiql(page: Page, base_url: str) -> None:
    await page.goto(base_url + "/graphql")
    await page.wait_for_selector(".graphiql-container .graphiql-query-editor .CodeMirror",
                                 timeout=15_000)


async def _type_into(page: Page, selector: str, text: str) -> None:
    await page.click(selector)
    await page.keyboard.press("Control+A")
    await page.keyboard.press("Delete")
    await page.keyboard.type(text)
    await page.keyboard.press("Escape")  # close an autocomplete hint, if one is open


async def editor_text(page: Page, selector: str) -> str:
    value: str = await page.evaluate(
        f"document.querySelector({selector!r}).CodeMirror.getValue()")
    return value


async def type_headers(page: Page, headers: str) -> None:
    await page.get_by_role("button", name="Headers").click()
    selector = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
    await _type_into(page, selector, headers)


async def type_query(page: Page, query: str) -> None:
    await _type_into(page, ".graphiql-query-editor .CodeMirror", query)


async def run(page: Page) -> None:
    await page.click(".graphiql-execute-button")


async def result_text(page: Page) -> str:
    value: str = await page.evaluate(RESULT_TEXT)
    return value


async def wait_for_result(page: Page, predicate: Any, *, within: float = 15.0) -> str:
    """Poll the result pane until ``predicate(text)`` holds; fail with what it showed."""
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        text = await result_text(page)
        if predicate(text):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"the result pane never matched; it shows:\n{text}")

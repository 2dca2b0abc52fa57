"""Load the models once and serve the page (binds to 127.0.0.1 unless told otherwise).

Hardening beyond what the page itself checks: Gradio's file-upload route is closed (the page
has no upload), and a request Gradio refuses before our handlers see it (a value not among a
dropdown's choices, a slider out of range) is one line on the server console, not a traceback.
Gradio's time estimates (the average of an event's past runs, whatever their input) are not
shown: the page says its own, from the input's tokens.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from rnacli.demo.page import console, prepare
from rnacli.errors import RnacliError

if TYPE_CHECKING:  # Gradio is imported only when the page is built (it takes seconds)
    import gradio as gr

    from rnacli.demo.page import DemoData

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(
    runs: list[str],
    host: str = "127.0.0.1",
    port: int = 7860,
    keywords_file: str | None = None,
    *,
    dtype: str = "auto",
    device: str = "auto",
) -> None:
    """Load the base model once plus each run's delta, print the memory they take, and serve
    the demo page until interrupted."""
    # Per-request progress bars would flood the server console (and rich allows one at a time).
    os.environ.setdefault("RNACLI_QUIET", "1")
    with console.status("loading models and choosing the opening question"):
        data = prepare(runs, keywords_file=keywords_file, dtype=dtype, device=device)
    # run names, keywords and the host come from the user: printed as text, not as markup
    console.print(data.bank.memory.summary(), markup=False)
    for note in data.notes:
        console.print(note, markup=False)
    if host not in LOCAL_HOSTS:
        console.print(
            f"[yellow]warning:[/] serving on {escape(host)}: the demo has no login and is "
            "reachable by anyone who can reach it"
        )
    launch(
        data,
        host=host,
        port=port,
        on_ready=lambda url: console.print(f"serving on {url}", markup=False),
    )


class _NoUploads:
    """ASGI middleware: every request to an upload route (`.../upload`) gets 403, so nothing
    can be written to the server's disk through the page."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/").rsplit("/", 1)[-1] == "upload":
            from starlette.responses import PlainTextResponse

            response = PlainTextResponse("uploads are disabled in this demo", status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _OneLineGradioErrors:
    """Stands in for the `traceback` module inside Gradio's request handling: a gradio.Error
    (Gradio's own input validation) is printed as one line; any other exception, a bug, keeps
    its full traceback."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def print_exc(self, *args: Any, **kwargs: Any) -> None:
        from gradio.exceptions import Error

        error = sys.exc_info()[1]
        if isinstance(error, Error):
            text = str(getattr(error, "message", None) or error)
            first = (text.strip().splitlines() or [type(error).__name__])[0]
            print(f"demo: refused a request: {first[:300]}", file=sys.stderr)
        else:
            self._real.print_exc(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _one_line_gradio_errors() -> None:
    import gradio.queueing
    import gradio.routes

    for module in (gradio.queueing, gradio.routes):
        if getattr(module, "traceback", None) is traceback:
            module.traceback = _OneLineGradioErrors(traceback)  # type: ignore[attr-defined]


class _NoAverages(defaultdict):
    """Gradio's queue keeps each event's average duration and shows it as the next run's
    estimate ("3.1/4.5s"), whatever that run's input: a 5,000-character question took ~40 s
    under a 4.5 s estimate. Told it has no average, it shows the time elapsed only; the probe's
    progress bar says the page's own estimate (rnacli.demo.estimate)."""

    def __contains__(self, fn: object) -> bool:
        return False


def _no_average_estimates(blocks: gr.Blocks) -> None:
    queue = getattr(blocks, "_queue", None)
    times = getattr(queue, "process_time_per_fn", None)
    if isinstance(times, defaultdict):
        queue.process_time_per_fn = _NoAverages(times.default_factory, times)  # type: ignore[union-attr]


def launch(
    data: DemoData,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    on_ready: Callable[[str], None] | None = None,
) -> tuple[gr.Blocks, str]:
    """Serve `data` (from `prepare`); with block=False, return (blocks, url) at once.
    `on_ready(url)` is called once the page is served (before blocking)."""
    from rnacli.app.render import CSS
    from rnacli.app.ui import build_app, theme
    from starlette.middleware import Middleware

    blocks = build_app(data)
    blocks.queue(default_concurrency_limit=1, max_size=64)
    _no_average_estimates(blocks)
    _one_line_gradio_errors()
    try:
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            share=False,  # no public links: the demo has no login
            inbrowser=False,
            prevent_thread_lock=True,
            show_error=False,  # handlers report errors themselves, in one line
            ssr_mode=False,
            pwa=False,
            max_file_size="1kb",  # the upload route is closed (_NoUploads); this backs it up
            app_kwargs={"middleware": [Middleware(_NoUploads)]},
            mcp_server=False,
            enable_monitoring=False,
            quiet=True,  # its hints name launch() options the command line does not have
            theme=theme(),
            css=CSS,
        )
    except OSError:  # Gradio's message names its own API; ours names the options
        raise RnacliError(
            f"cannot serve on {host}:{port}: the port is taken or the address is not this "
            "machine's; pick another --port or --host"
        ) from None
    if on_ready is not None:
        on_ready(url)
    if block:
        blocks.block_thread()
    return blocks, url

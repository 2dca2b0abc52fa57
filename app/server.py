"""Load the models once and serve the page (binds to 127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rnacli.data.perturb import keyword_sets
from rnacli.errors import RnacliError
from rnacli.probe import ModelBank, available_question_sets

if TYPE_CHECKING:  # Gradio is imported only when the page is built (it takes seconds)
    import gradio as gr

    from app.ui import DemoData

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def prepare(
    runs: Sequence[str],
    *,
    keywords_file: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
) -> DemoData:
    """Everything the page serves: the model bank, the offered question sets, the keywords.
    Raises RnacliError (one line) for a bad run, base model or keywords file."""
    from app.ui import DemoData, keyword_choices

    # Cheapest checks first: a wrong keywords file or run fails before anything big loads.
    keywords, keyword_notes = keyword_choices(keyword_sets((), keywords_file))
    bank = ModelBank.load(list(runs), dtype=dtype, device=device)
    bank.warm_up()
    sets, set_notes = available_question_sets()
    return DemoData(bank=bank, sets=sets, keywords=keywords, notes=set_notes + keyword_notes)


def serve(
    runs: list[str],
    host: str = "127.0.0.1",
    port: int = 7860,
    keywords_file: str | None = None,
    share: bool = False,
    *,
    dtype: str = "auto",
    device: str = "auto",
) -> None:
    """Load the base model once plus each run's delta, print the memory they take, and serve
    the demo page until interrupted."""
    # Per-request progress bars would flood the server console (and rich allows one at a time).
    os.environ.setdefault("RNACLI_QUIET", "1")
    from rnacli.progress import console

    with console.status("loading models"):
        data = prepare(runs, keywords_file=keywords_file, dtype=dtype, device=device)
    console.print(data.bank.memory.summary())
    for note in data.notes:
        console.print(note)
    if host not in LOCAL_HOSTS or share:
        where = "a public share link" if share else host
        console.print(
            f"[yellow]warning:[/] serving on {where}: the demo has no login and is reachable "
            "by anyone who can reach it"
        )
    launch(data, host=host, port=port, share=share)


def launch(
    data: DemoData,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    block: bool = True,
) -> tuple[gr.Blocks, str]:
    """Serve `data` (from `prepare`); with block=False, return (blocks, url) at once."""
    from app.render import CSS
    from app.ui import build_app, theme

    blocks = build_app(data)
    blocks.queue(default_concurrency_limit=1, max_size=64)
    try:
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            share=share,
            inbrowser=False,
            prevent_thread_lock=not block,
            show_error=False,  # handlers report errors themselves, in one line
            ssr_mode=False,
            pwa=False,
            max_file_size="1mb",  # the page takes no uploads; this bounds Gradio's upload route
            mcp_server=False,
            enable_monitoring=False,
            quiet=False,
            theme=theme(),
            css=CSS,
        )
    except OSError:  # Gradio's message names its own API; ours names the options
        raise RnacliError(
            f"cannot serve on {host}:{port}: the port is taken or the address is not this "
            "machine's; pick another --port or --host"
        ) from None
    return blocks, url

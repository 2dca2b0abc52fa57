"""`python -m rnacli.app [RUN...] [--host] [--port] [--keywords FILE]`: serve the demo."""

from __future__ import annotations

import argparse
import sys

from rnacli.app import serve

from rnacli.demo.page import quickstart_specs
from rnacli.errors import RnacliError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rnacli.app",
        description="Serve the rnacli demo: base, unlearned and RNA models side by side.",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run folders of one base model; a plain model (e.g. smollm2-135m) is the base "
        "column; none: the world model and the quickstart's runs (runs/world/)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--keywords", dest="keywords_file", help="mined keywords JSON file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto, fp32, bf16, fp16")
    args = parser.parse_args(argv)
    try:
        runs = args.runs or quickstart_specs()[0]
        serve(
            runs,
            host=args.host,
            port=args.port,
            keywords_file=args.keywords_file,
            device=args.device,
            dtype=args.dtype,
        )
    except RnacliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

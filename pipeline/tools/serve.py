"""Serve transcription over HTTP: an OpenAI-compatible API, a review page, corrections as training data.

    dictune serve [CONFIG] [--model SPEC] [--adapter DIR] [--host 127.0.0.1] [--port 8000] [--token T]

With CONFIG: the base model of `model.base`, the trained adapter of its train stage when there is one
(profile `default`), the profiles of `serve.profiles`, the context of `context:`, the engine and options
of `transcribe:`, and the corrections store under <work_dir>/service (or serve.store_dir). Binds to
127.0.0.1 by default; any other address needs a token (--token or DICTUNE_TOKEN) and the server refuses
to start without one. Then open http://HOST:PORT/ for the review page, or point an OpenAI client at
http://HOST:PORT/v1. See pipeline/service/app.py for the endpoints.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from pathlib import Path

from pipeline.errors import DictuneError

logger = logging.getLogger("dictune")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config (model, context, transcribe, serve sections)")
    parser.add_argument("--model", help="base model spec (default: the config's model.base, else tiny.en)")
    parser.add_argument("--adapter", help="LoRA adapter dir for the default profile")
    parser.add_argument("--host", help="address to bind (default serve.host: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default serve.port: 8000)")
    parser.add_argument("--token", help="bearer token (default $DICTUNE_TOKEN); required off loopback")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise DictuneError(f"serve: binding {host} (not loopback) needs a token: give --token or set "
                           "DICTUNE_TOKEN; clients then send Authorization: Bearer <token>")  # fmt: skip


def build(args: argparse.Namespace):
    """(the ASGI app, host, port) from the arguments and the config."""
    from pipeline.config import Config, load_config
    from pipeline.service.app import create_app
    from pipeline.service.profiles import Profiles
    from pipeline.service.store import CorrectionsStore

    config = load_config(args.config) if args.config else Config(name="serve")
    serve = config.serve
    host, port = args.host or serve.host, args.port or serve.port
    token = args.token or os.environ.get("DICTUNE_TOKEN") or None
    check_bind(host, token)
    adapter = args.adapter
    trained = config.stage_dir("train") / "adapter"
    if adapter is None and args.config and (trained / "adapter_config.json").is_file():
        adapter = str(trained)
    profiles = Profiles(config, args.model or config.model.base, adapter, serve.profiles, serve.max_loaded_profiles,
                        serve.max_profiles_mb)  # fmt: skip
    store = CorrectionsStore(Path(serve.store_dir) if serve.store_dir else config.work_path / "service")
    store.recover()
    app = create_app(profiles, store, serve, token, config.lexicon)
    return app, host, port


def main(args: argparse.Namespace) -> int:
    import uvicorn

    app, host, port = build(args)
    logger.info("serve: http://%s:%d/ (review page), OpenAI API at /v1", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)
    return 0

"""Load test of `dictune serve`, on loopback only, with a bounded number of requests and a time limit.

    python scripts/load_serve.py [--config configs/radiology_demo.yaml] [--manifest M] [--clips 20]
                                 [--clients 50] [--requests 4] [--time-limit 900] [--profiles 2]

Starts the server (`dictune serve CONFIG --host 127.0.0.1 --port P`) as a child process, sends
clients x requests transcriptions of demo clips at once from asyncio clients, and reports: how many got
200 and how many 503 (every request must get one of the two: none lost, none 500), p50 / p95 latency of
the 200s, throughput in audio seconds per wall second, and the server's peak RSS (VmHWM). Beside it, the
same clips through `dictune transcribe`'s batch driver in this process (same engine and options), the
speed a single batch job gets. With --profiles N it then loads N profiles of the same adapter and
reports the server's RSS after each: the memory one more loaded profile costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/radiology_demo.yaml")
    parser.add_argument("--manifest", default="data_manifests/radiology_demo/test.jsonl")
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds for the whole load phase")
    parser.add_argument("--profiles", type=int, default=0, help="measure RSS per extra loaded profile")
    args = parser.parse_args()
    if args.clients * args.requests > 1000:
        sys.exit("load_serve: at most 1000 requests (clients x requests)")

    from pipeline.config import load_config
    from pipeline.manifest import read_manifest, resolve_audio_path

    config = load_config(args.config)
    clips = [resolve_audio_path(r, args.manifest) for r in read_manifest(args.manifest)][: args.clips]
    seconds = {str(c): _duration(c) for c in clips}
    adapter = config.stage_dir("train") / "adapter"
    work = Path(tempfile.mkdtemp(prefix="dictune-load-"))
    profiles = {f"extra{i}": str(adapter) for i in range(1, args.profiles + 1)}
    serve_config = _config(args.config, work, profiles)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(serve_config), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, server)
        asyncio.run(_request(url, clips[0], "default"))  # load the default profile before timing
        started = time.monotonic()
        results = asyncio.run(_load(url, clips, args.clients, args.requests, args.time_limit))
        wall = time.monotonic() - started
        peak = _peak_rss(server.pid)
        extra = _profile_memory(url, clips[0], server.pid, list(profiles)) if profiles else []
    finally:
        server.terminate()
        server.wait(timeout=30)
    batch = _batch_speed(config, clips, adapter)
    _report(results, seconds, wall, peak, batch, extra, args)


def _config(path: str, work: Path, profiles: dict[str, str]) -> Path:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    serve = dict(data.get("serve") or {})
    serve.update({"store_dir": str(work / "store"), "profiles": profiles, "max_loaded_profiles": len(profiles) + 1})
    data["serve"] = serve
    out = work / "serve.yaml"
    out.write_text(yaml.safe_dump(data), encoding="utf-8")
    return out


def _duration(path: Path) -> float:
    import soundfile

    info = soundfile.info(str(path))
    return info.frames / info.samplerate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, server: subprocess.Popen) -> None:
    import httpx

    for _ in range(1200):  # bounded: 120 s
        if server.poll() is not None:
            sys.exit(f"load_serve: the server exited with {server.returncode}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit("load_serve: the server did not start within 120 s")


async def _request(url: str, clip: Path, model: str, client=None) -> tuple[int, float, str]:
    import httpx

    own = client is None
    client = client or httpx.AsyncClient(timeout=600)
    started = time.monotonic()
    try:
        response = await client.post(url + "/v1/audio/transcriptions", data={"model": model},
                                     files={"file": (clip.name, clip.read_bytes(), "audio/wav")})  # fmt: skip
        return response.status_code, time.monotonic() - started, str(clip)
    except httpx.HTTPError as e:
        return -1, time.monotonic() - started, f"{clip}: {type(e).__name__}"
    finally:
        if own:
            await client.aclose()


async def _load(url: str, clips: list[Path], clients: int, requests: int, limit: float) -> list[tuple[int, float, str]]:
    import httpx

    async def one_client(index: int) -> list[tuple[int, float, str]]:
        async with httpx.AsyncClient(timeout=limit) as client:
            return [await _request(url, clips[(index * requests + k) % len(clips)], "default", client)
                    for k in range(requests)]  # fmt: skip

    done = await asyncio.wait_for(asyncio.gather(*(one_client(i) for i in range(clients))), timeout=limit)
    return [r for rows in done for r in rows]


def _peak_rss(pid: int) -> float:
    """The process's peak resident memory in MB (Linux VmHWM)."""
    from pipeline.procmem import proc_mb

    return proc_mb("VmHWM", pid)


def _rss(pid: int) -> float:
    from pipeline.procmem import proc_mb

    return proc_mb("VmRSS", pid)


def _profile_memory(url: str, clip: Path, pid: int, names: list[str]) -> list[tuple[str, float]]:
    rows = [("default", _rss(pid))]
    for name in names:
        status, _, _ = asyncio.run(_request(url, clip, name))
        rows.append((name if status == 200 else f"{name} (status {status})", _rss(pid)))
    return rows


def _batch_speed(config, clips: list[Path], adapter: Path) -> float:
    """Audio seconds per wall second of `dictune transcribe`'s batch driver on the same clips."""
    from pipeline.inference.batch import transcribe_files

    with tempfile.TemporaryDirectory() as out:
        summary = transcribe_files([str(c) for c in clips], out, config.model.base,
                                   adapter if (adapter / "adapter_config.json").is_file() else None,
                                   config.transcribe, config.lexicon, config.model.cache_dir,
                                   context=config.context)  # fmt: skip
    return summary.audio_seconds / summary.wall_seconds if summary.wall_seconds else float("nan")


def _report(results, seconds, wall, peak, batch, extra, args) -> None:
    ok = [r for r in results if r[0] == 200]
    busy = [r for r in results if r[0] == 503]
    other = [r for r in results if r[0] not in (200, 503)]
    latencies = sorted(r[1] for r in ok)
    audio = sum(seconds[r[2]] for r in ok)
    p = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]) if latencies else (lambda q: float("nan"))
    print(f"load: {args.clients} clients x {args.requests} requests = {len(results)} on loopback, {wall:.0f} s")
    print("| answered 200 | 503 (busy) | other (lost, 500) | p50 s | p95 s | audio s per wall s | peak server RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(ok)} | {len(busy)} | {len(other)} | {p(0.5):.2f} | {p(0.95):.2f} | {audio / wall:.2f} | {peak:.0f} |")
    print(f"`dictune transcribe` batch driver on the same {len(seconds)} clips: {batch:.2f} audio s per wall s")
    if latencies:
        print(f"mean latency {statistics.mean(latencies):.2f} s")
    for name, rss in extra:
        print(f"RSS with profiles up to {name} loaded: {rss:.0f} MB")
    print(json.dumps({"ok": len(ok), "busy": len(busy), "other": len(other), "other_detail": other[:5]}))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

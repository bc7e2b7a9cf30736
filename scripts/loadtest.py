"""Load test of an OpenAI-compatible chat server on this machine: concurrent streaming clients, verified.

For each client count N (default 8, 32, 64), N clients each send ``--requests-per-client`` streamed chat
requests one after another, all clients at once. Every request has a prompt and a ``seed`` of its own (the
marker), and is checked: status 200, a well-formed stream (one id, the role first, one finish reason, the
usage chunk, ``[DONE]`` last) and, with ``--verify reference`` (the default), the same reasoning, content,
tool calls and token count as a non-streamed reference of the same request, made beforehand. A response
that is lost, cut, or belongs to another request fails that check. Reports errors, mismatches, output
tokens per second over the wall time, and TTFT percentiles (request sent to first generated text); writes
JSON.

Bounded on purpose: loopback URLs only, at most 256 clients, 100 requests each, 1024 tokens, and
``--time-limit`` seconds for the whole run (unfinished requests count as errors).

    pipo-agent serve --api-key-file key.txt &
    python scripts/loadtest.py --url http://127.0.0.1:8000 --api-key-file key.txt --out loadtest.json
"""

import argparse
import ipaddress
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

MAX_CLIENTS = 256
MAX_REQUESTS_PER_CLIENT = 100
MAX_TOKENS = 1024


@dataclass(frozen=True)
class Turn:
    """What a request produced, in a form comparable between streamed and non-streamed answers."""

    reasoning: str
    content: str
    calls: tuple[tuple[str, str], ...]  # (name, arguments); ids are random per response
    completion_tokens: int
    finish_reason: str


@dataclass
class Outcome:
    client: int
    index: int
    ok: bool = False
    error: str | None = None
    mismatch: str | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    completion_tokens: int = 0


@dataclass
class Report:
    clients: int
    requests: int
    errors: int
    mismatches: int
    wall_s: float
    output_tokens: int
    output_tokens_per_s: float
    requests_per_s: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    latency_p50_s: float | None
    latency_p99_s: float | None
    error_samples: list[str] = field(default_factory=list)


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request_body(model: str, client: int, index: int, max_tokens: int, *, stream: bool) -> dict[str, Any]:
    """A distinct request per (client, index): its own numbers in the prompt and its own seed."""
    a, b = 17 + 7 * client + index, 31 + 3 * index + client
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": f"Client {client}, request {index}: what is {a} + {b}?"}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 1_000_003 * client + index,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def reference(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> Turn:
    response = await client.post(url, json=body)
    response.raise_for_status()
    data = response.json()
    message = data["choices"][0]["message"]
    calls = tuple(
        (c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or ()
    )
    return Turn(
        reasoning=message.get("reasoning_content") or "",
        content=message.get("content") or "",
        calls=calls,
        completion_tokens=data["usage"]["completion_tokens"],
        finish_reason=data["choices"][0]["finish_reason"],
    )


async def streamed(client: httpx.AsyncClient, url: str, body: dict[str, Any], outcome: Outcome) -> Turn:
    """One streamed request, checked for well-formedness; fills the outcome's timings."""
    started = time.perf_counter()
    reasoning: list[str] = []
    content: list[str] = []
    calls: list[tuple[str, str]] = []
    ids: set[str] = set()
    finish: list[str] = []
    usage: dict[str, Any] | None = None
    done = False
    first = True
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            await response.aread()
            raise RuntimeError(f"status {response.status_code}: {response.text[:200]}")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if done:
                raise RuntimeError("data after [DONE]")
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"error event: {chunk['error'].get('message')}")
            ids.add(chunk["id"])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk["choices"]:
                delta = choice["delta"]
                if first:
                    if delta.get("role") != "assistant":
                        raise RuntimeError("the first chunk does not carry the assistant role")
                    first = False
                if outcome.ttft_s is None and (
                    delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls")
                ):
                    outcome.ttft_s = time.perf_counter() - started
                reasoning.append(delta.get("reasoning_content") or "")
                content.append(delta.get("content") or "")
                calls += [
                    (c["function"]["name"], c["function"]["arguments"]) for c in delta.get("tool_calls") or ()
                ]
                if choice.get("finish_reason"):
                    finish.append(choice["finish_reason"])
    outcome.latency_s = time.perf_counter() - started
    problems = []
    if not done:
        problems.append("no [DONE]")
    if len(ids) != 1:
        problems.append(f"{len(ids)} ids in one stream")
    if len(finish) != 1:
        problems.append(f"{len(finish)} finish reasons")
    if usage is None:
        problems.append("no usage chunk")
    if problems:
        raise RuntimeError("malformed stream: " + ", ".join(problems))
    assert usage is not None
    return Turn("".join(reasoning), "".join(content), tuple(calls), usage["completion_tokens"], finish[0])


async def run_level(
    client: httpx.AsyncClient, args: argparse.Namespace, n: int, references: dict[tuple[int, int], Turn]
) -> Report:
    url = f"{args.url.rstrip('/')}/v1/chat/completions"
    outcomes: list[Outcome] = []

    async def one_client(i: int) -> None:
        for j in range(args.requests_per_client):
            outcome = Outcome(client=i, index=j)
            outcomes.append(outcome)
            body = request_body(args.model, i, j, args.max_tokens, stream=True)
            try:
                turn = await streamed(client, url, body, outcome)
            except Exception as exc:  # every failure of a request is counted, never raised
                outcome.error = f"client {i} request {j}: {type(exc).__name__}: {exc}"
                continue
            outcome.ok = True
            outcome.completion_tokens = turn.completion_tokens
            expected = references.get((i, j))
            if expected is not None and turn != expected:
                outcome.mismatch = f"client {i} request {j}: streamed {turn!r} != reference {expected!r}"

    started = time.perf_counter()
    with anyio.move_on_after(args.time_limit):
        async with anyio.create_task_group() as group:
            for i in range(n):
                group.start_soon(one_client, i)
    wall = time.perf_counter() - started
    total = n * args.requests_per_client
    for outcome in outcomes:
        if not outcome.ok and outcome.error is None:
            outcome.error = f"client {outcome.client} request {outcome.index}: cut off by --time-limit"
    errors = [o.error for o in outcomes if o.error] + ["not started (time limit)"] * (total - len(outcomes))
    mismatches = [o.mismatch for o in outcomes if o.mismatch]
    tokens = sum(o.completion_tokens for o in outcomes if o.ok)
    ttfts = [o.ttft_s for o in outcomes if o.ok and o.ttft_s is not None]
    latencies = [o.latency_s for o in outcomes if o.ok and o.latency_s is not None]
    return Report(
        clients=n,
        requests=total,
        errors=len(errors),
        mismatches=len(mismatches),
        wall_s=wall,
        output_tokens=tokens,
        output_tokens_per_s=tokens / wall if wall > 0 else 0.0,
        requests_per_s=sum(o.ok for o in outcomes) / wall if wall > 0 else 0.0,
        ttft_p50_s=percentile(ttfts, 50),
        ttft_p99_s=percentile(ttfts, 99),
        latency_p50_s=percentile(latencies, 50),
        latency_p99_s=percentile(latencies, 99),
        error_samples=[e for e in errors if e][:5] + [m for m in mismatches if m][:5],
    )


async def references_for(
    client: httpx.AsyncClient, args: argparse.Namespace, n: int
) -> dict[tuple[int, int], Turn]:
    """Non-streamed answers of every request, a few at a time (the engine's output does not depend on
    what else is in the batch, which the engine's own tests check)."""
    url = f"{args.url.rstrip('/')}/v1/chat/completions"
    out: dict[tuple[int, int], Turn] = {}
    limiter = anyio.Semaphore(args.reference_concurrency)

    async def one(i: int, j: int) -> None:
        async with limiter:
            out[(i, j)] = await reference(
                client, url, request_body(args.model, i, j, args.max_tokens, stream=False)
            )

    with anyio.fail_after(args.time_limit):
        async with anyio.create_task_group() as group:
            for i in range(n):
                for j in range(args.requests_per_client):
                    group.start_soon(one, i, j)
    return out


async def main_async(args: argparse.Namespace) -> list[Report]:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    biggest = max(args.clients)
    limits = httpx.Limits(
        max_connections=biggest + args.reference_concurrency, max_keepalive_connections=biggest
    )
    timeout = httpx.Timeout(args.time_limit, connect=10.0)
    reports = []
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:
        references = await references_for(client, args, biggest) if args.verify == "reference" else {}
        for n in args.clients:
            report = await run_level(client, args, n, references)
            reports.append(report)
            print_row(report)
    return reports


def print_row(r: Report) -> None:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1e3:.0f}"

    print(
        f"| {r.clients} | {r.requests} | {r.errors} | {r.mismatches} | {r.output_tokens_per_s:.1f} | "
        f"{ms(r.ttft_p50_s)} | {ms(r.ttft_p99_s)} | {ms(r.latency_p50_s)} | {r.wall_s:.1f} |",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server root (loopback only)")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--api-key-file", type=Path, default=None)
    parser.add_argument("--model", default="pipo-default")
    parser.add_argument("--clients", default="8,32,64", help="comma-separated client counts")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--verify", choices=("reference", "stream"), default="reference")
    parser.add_argument("--reference-concurrency", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per phase")
    parser.add_argument("--out", type=Path, default=Path("loadtest.json"))
    args = parser.parse_args(argv)
    args.clients = [int(x) for x in str(args.clients).split(",") if x.strip()]
    if not is_loopback_url(args.url):
        parser.error(f"--url must be a loopback address (127.0.0.1, ::1, localhost), got {args.url}")
    if not args.clients or not all(1 <= n <= MAX_CLIENTS for n in args.clients):
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 1 <= args.requests_per_client <= MAX_REQUESTS_PER_CLIENT:
        parser.error(f"--requests-per-client must be between 1 and {MAX_REQUESTS_PER_CLIENT}")
    if not 1 <= args.max_tokens <= MAX_TOKENS:
        parser.error(f"--max-tokens must be between 1 and {MAX_TOKENS}")
    if not 1 <= args.reference_concurrency <= 64:
        parser.error("--reference-concurrency must be between 1 and 64")
    if args.api_key_file is not None:
        args.api_key = args.api_key_file.read_text().strip()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        "| N | requests | errors | mismatches | output tok/s | TTFT p50 ms | TTFT p99 ms | latency p50 ms | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    reports = anyio.run(main_async, args)
    settings = {k: v for k, v in vars(args).items() if k not in ("api_key", "api_key_file", "out")}
    payload = {"settings": settings, "results": [asdict(r) for r in reports]}
    args.out.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0 if all(r.errors == 0 and r.mismatches == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())

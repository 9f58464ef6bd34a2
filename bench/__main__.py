"""`python -m bench`: the whole performance run of issue 10 in one command, on one machine, in one invocation.

1. Start the stack (bench/load.py's running_stack) and measure the raw limits on its own servers (bench/raw.py).
2. Run the load steps against it (bench/load.py), then hold idle sockets (`--idle`).
3. Run the same steps and idle sockets against the python-socketio relay (bench/peer_socketio.py).
4. Print the table, Deskbell's figures as ratios of the raw ones and of the peer's, and write var/bench/all.json
   and var/bench/load.svg (Deskbell's stored acks, with the peer's relay acks dashed).

Takes the options of bench/load.py (`--rates`, `--seconds`, `--visitors`, `--agents`, `--idle`, …).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import raw
from bench.load import parse_options, print_report, run_load, running_stack
from bench.load_report import svg_chart, table


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}×"


def ratios(figures: dict[str, Any]) -> list[str]:
    ours, rawf, peer = figures["deskbell"], figures["raw"], figures.get("peer")
    js, pg = rawf["jetstream"], rawf["postgres"]
    best = max(ours["steps"], key=lambda s: s["acked_per_s"])
    lines = [
        f"Deskbell's best sustained rate {best['acked_per_s']:.0f} acked/s (offered {best['offered_per_s']:.0f}/s) is",
        f"  {_ratio(best['acked_per_s'], js['publish_ack_pipelined']['per_s'])} of JetStream publish-with-ack "
        f"({js['publish_ack_pipelined']['per_s']:.0f}/s, {js['publish_ack_pipelined']['window']} in flight),",
        f"  {_ratio(best['acked_per_s'], js['pull_ack']['per_s'])} of JetStream pull-and-ack "
        f"({js['pull_ack']['per_s']:.0f}/s),",
        f"  {_ratio(best['acked_per_s'], pg['insert_batched']['rows_per_s'])} of PostgreSQL batched inserts "
        f"({pg['insert_batched']['rows_per_s']:.0f} rows/s).",
        "Stored-ack p50 as a multiple of one raw publish-ack plus one raw commit "
        f"({js['publish_ack_sequential']['ack_ms']['p50']} + {pg['insert_commit_each']['commit_ms']['p50']} ms):",
    ]
    floor = js["publish_ack_sequential"]["ack_ms"]["p50"] + pg["insert_commit_each"]["commit_ms"]["p50"]
    lines += [f"  at {s['offered_per_s']:.0f}/s: {_ratio(s['ack_ms']['p50'], floor)}" for s in ours["steps"]]
    if peer:
        lines.append("Against the python-socketio relay (which stores nothing), per step, ours / peer's:")
        for s, p in zip(ours["steps"], peer["steps"], strict=False):
            lines.append(
                f"  at {s['offered_per_s']:.0f}/s: ack p50 {_ratio(s['ack_ms']['p50'], p['ack_ms']['p50'])}, "
                f"p99 {_ratio(s['ack_ms']['p99'], p['ack_ms']['p99'])}; seen by an agent p50 "
                f"{_ratio(s['seen_ms']['p50'], p['seen_ms']['p50'])}; reply seen p50 "
                f"{_ratio(s['reply_seen_ms']['p50'], p['reply_seen_ms']['p50'])}"
            )
        if ours.get("idle") and peer.get("idle"):
            o, q = ours["idle"], peer["idle"]
            lines.append(
                f"  idle sockets ({o['sockets']}): RSS per socket {o['rss_per_socket_kib']} KiB vs "
                f"{q['rss_per_socket_kib']} KiB ({_ratio(o['rss_per_socket_kib'], q['rss_per_socket_kib'])}); "
                f"heartbeat CPU {o['web_cpu_percent']}% vs {q['peer_cpu_percent']}% of a core; storm "
                f"{o['storm_seconds']} s vs {q['storm_seconds']} s"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    options, args = parse_options(argv)
    figures: dict[str, Any] = {"load_average_before": os.getloadavg()}
    web = {"WEB_CONCURRENCY": str(args.web)}
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), options.agents, args.workers, web) as stack:
        figures["raw"] = {
            "jetstream": asyncio.run(raw.jetstream(stack.nats_url)),
            "postgres": raw.postgres(stack.database_url),
        }
        figures["deskbell"] = asyncio.run(run_load(stack, options))
    try:
        from bench.peer_socketio import run_peer_load, running_peer

        with running_peer() as (url, group):
            figures["peer"] = asyncio.run(run_peer_load(url, group, options))
    except ImportError:
        print("python-socketio is not installed (pip install -e '.[bench]'): no peer", file=sys.stderr)
    figures["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "all.json").write_text(json.dumps(figures, indent=2))
    peer_steps = figures["peer"]["steps"] if "peer" in figures else None
    (args.out / "load.svg").write_text(
        svg_chart(figures["deskbell"]["steps"], "Send → ack: Deskbell stored (solid), socket.io relay (dashed)",
                  compare=peer_steps)
    )
    print("Deskbell")
    print_report(figures["deskbell"])
    if "peer" in figures:
        print("\npython-socketio relay (stores nothing)")
        print(table(figures["peer"]["steps"]))
    print("\nraw: " + json.dumps(figures["raw"]))
    print("\n" + "\n".join(ratios(figures)))
    print(f"\nload average before {figures['load_average_before']}, after {figures['load_average_after']}")
    print(f"wrote {args.out / 'all.json'} and {args.out / 'load.svg'}")


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl+C (asyncio cancels the run), so the stack's processes are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()

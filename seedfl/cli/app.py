"""The ``seedfl`` command line: init, run, status, certs, peers, eval, plot, export, bench, demo.

Exit codes (stable, for scripts):
  0  success
  1  runtime failure (training diverged, a peer stream broke beyond repair, ...)
  2  bad usage, config or data (the message names the key, file or line)
  3  cannot reach a node (status) or nothing found (peers with --require)
  130 interrupted before a clean shutdown could finish (run: 128 + the signal,
      after a second SIGINT/SIGTERM)

Human output is plain text; ``--json`` output is stable for scripts. Every
error path prints one line saying what went wrong and what to do, no traceback
(set SEEDFL_DEBUG=1 for tracebacks).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seedfl import __version__
from seedfl.core.errors import UsageError, UserError
from seedfl.node.options import DEFAULT_PORT, NodeOptions

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3




def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"SEEDFL_{name}", default)


def _add_tls(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", default=_env("TLS_CERT"),
                   help="this node's PEM certificate (with --tls-key and --tls-ca: TLS on; "
                        "make them with `seedfl certs`) ($SEEDFL_TLS_CERT; overrides tls.cert)")
    p.add_argument("--tls-key", default=_env("TLS_KEY"),
                   help="its private key ($SEEDFL_TLS_KEY; overrides tls.key)")
    p.add_argument("--tls-ca", default=_env("TLS_CA"),
                   help="the swarm CA certificate, the only one trusted "
                        "($SEEDFL_TLS_CA; overrides tls.ca)")


def _add_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run a node: train on local data and join the swarm")
    p.add_argument("--config", default=_env("CONFIG"), help="swarm config TOML ($SEEDFL_CONFIG)")
    p.add_argument("--data", default=_env("DATA"),
                   help="local training data: .jsonl, .csv or .txt ($SEEDFL_DATA); "
                        "omit to only relay and apply others' updates")
    p.add_argument("--state-dir", default=_env("STATE_DIR"),
                   help="node state directory ($SEEDFL_STATE_DIR; default: user data dir)")
    p.add_argument("--listen", default=_env("LISTEN", f"0.0.0.0:{DEFAULT_PORT}"),
                   help=f"host:port for the peer and control service (default port "
                   f"{DEFAULT_PORT}, so static peers can be written down; 0 = any free port, "
                   "for several nodes on one host) ($SEEDFL_LISTEN)")
    p.add_argument("--interface", default=_env("INTERFACE"),
                   help="IP address used for mDNS and the listener on multi-homed hosts")
    p.add_argument("--peer", action="append",
                   default=[a for a in (_env("PEERS") or "").replace(",", " ").split() if a],
                   help="static peer host:port, repeatable (for networks without multicast); "
                   "$SEEDFL_PEERS takes a comma-separated list")
    p.add_argument("--name", default=_env("NAME"), help="human name of this node")
    p.add_argument("--device", default=_env("DEVICE", "cpu"),
                   help="cpu, cuda[:n], mps or auto (device_map across GPUs)")
    p.add_argument("--no-mdns", action="store_true", default=_env("NO_MDNS") == "1",
                   help="do not advertise or browse mDNS; use --peer")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop stepping once this node has made this many updates in all "
                        "(counted across restarts); it keeps applying peers' updates")
    p.add_argument("--exit-after-steps", action="store_true",
                   help="exit once --max-steps are done and peers have our updates")
    p.add_argument("--secret-file", default=_env("SECRET_FILE"),
                   help="file with the swarm secret (overrides swarm.secret_file)")
    _add_tls(p)
    p.add_argument("--tls-no-mutual", action="store_true",
                   help="TLS without client certificates: any client may connect and the "
                        "swarm secret alone decides membership (overrides tls.mutual)")
    p.add_argument("--checkpoint-every", type=int, default=1000,
                   help="applied updates between checkpoints (recovery replays at most this many)")
    p.add_argument("--fsync", choices=["always", "batch", "never"], default="batch",
                   help="fsync policy for peers' updates in the log "
                        "(own updates are always synced before they are sent)")
    p.add_argument("--catch-up", choices=["auto", "replay", "snapshot", "pool"], default="auto",
                   help="how a joiner catches up with the swarm")
    p.add_argument("--suspect-after", type=float, default=None,
                   help="seconds of silence before a connected peer is suspected (default 5)")
    p.add_argument("--dead-after", type=float, default=None,
                   help="seconds a suspect has to refute before it is shown dead (default 10)")
    p.add_argument("--metrics-port", type=int, default=_env("METRICS_PORT"),
                   help="serve Prometheus metrics at http://<listen host>:PORT/metrics "
                        "($SEEDFL_METRICS_PORT; 0 = any free port, written to "
                        "<state>/metrics.addr; default: off)")
    p.add_argument("--active-view", type=int, default=8,
                   help="most peers to keep links to; more are dialed while below half of it "
                        "(default 8; 0 = link to every member)")
    p.add_argument("--step-interval", type=float, default=0.0,
                   help="seconds to pause between own steps (share a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _node_options(args: argparse.Namespace) -> NodeOptions:
    """`seedfl run`'s flags as the options a node takes (the only thing run does)."""
    if not args.config:
        raise UsageError("--config is required (create one with `seedfl init > swarm.toml`)")
    return NodeOptions(
        config=args.config, data=args.data, state_dir=args.state_dir, listen=args.listen,
        peers=tuple(args.peer), mdns=not args.no_mdns, interface=args.interface,
        name=args.name, device=args.device, secret_file=args.secret_file,
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca,
        tls_mutual=False if args.tls_no_mutual else None,
        max_steps=args.max_steps, exit_after_steps=args.exit_after_steps,
        checkpoint_every=args.checkpoint_every, fsync=args.fsync, catch_up=args.catch_up,
        suspect_after=args.suspect_after, dead_after=args.dead_after,
        metrics_port=args.metrics_port, step_interval=args.step_interval, quiet=args.quiet,
        active_view=args.active_view)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seedfl",
        description="Decentralized zeroth-order finetuning: one byte per update.",
    )
    parser.add_argument("--version", action="version", version=f"seedfl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="print a commented swarm config")
    p.add_argument("--model", help="set model.name")
    p.add_argument("--out", help="write to this file instead of stdout")

    _add_run(sub)

    p = sub.add_parser("status", help="show one node's view of the swarm")
    p.add_argument("address", nargs="?", help="node control address host:port (default: local)")
    p.add_argument("--state-dir", default=_env("STATE_DIR"), help="find the local node here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true", help="refresh every --interval seconds")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=5.0)
    _add_tls(p)

    p = sub.add_parser("certs", help="make a swarm CA and node certificates for TLS")
    p.add_argument("names", nargs="+", help="one certificate per node name (and any "
                   "client, e.g. an operator running `seedfl status`)")
    p.add_argument("--out", default="certs", help="directory (its ca.pem/ca.key are reused)")
    p.add_argument("--days", type=int, default=825, help="validity of the node certificates")

    p = sub.add_parser("peers", help="list seedfl nodes visible on the LAN by mDNS")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--interface", default=_env("INTERFACE"))

    p = sub.add_parser("eval", help="loss (and accuracy) of a node's current model")
    p.add_argument("--state-dir", default=_env("STATE_DIR"))
    p.add_argument("--config", default=None,
                   help="evaluate the untrained base model of this swarm config instead")
    p.add_argument("--data", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N examples")
    p.add_argument("--template", action="append", default=[],
                   help="score this prompt template instead of the config's (repeatable: "
                        "each is scored and printed, best first)")
    p.add_argument("--verbalizer", action="append", default=[],
                   help='label words as JSON, e.g. \'{"0": " negative", "1": " positive"}\': '
                        "one for every --template, or one for all (default: the config's)")

    p = sub.add_parser("plot", help="draw loss/accuracy curves from a node's history as PNG")
    p.add_argument("--state-dir", default=_env("STATE_DIR"), required=_env("STATE_DIR") is None)
    p.add_argument("--out", default="curves.png")
    p.add_argument("--width", type=int, default=900)
    p.add_argument("--height", type=int, default=0, help="pixels (default: by panel count)")

    p = sub.add_parser("export", help="write a Hugging Face model directory")
    p.add_argument("--state-dir", default=_env("STATE_DIR"), required=_env("STATE_DIR") is None)
    p.add_argument("--out", required=True)

    p = sub.add_parser("bench", help="benchmarks (JSON ratios measured in one run)")
    p.add_argument("what", choices=["step", "replay", "memory", "wire", "learning", "pool",
                                    "catchup", "scale", "all"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--steps", type=int, default=None,
                   help="learning bench: steps per node (default: the demo recipe's)")
    p.add_argument("--holdout", type=int, default=None,
                   help="learning bench: held-out sentences to evaluate on (default 400)")
    p.add_argument("--png", default=None,
                   help="learning bench: also draw the curves (accuracy vs seconds, node-steps)")
    p.add_argument("--codec", default=None, metavar="NAMES",
                   help="wire bench: codec(s), comma-separated, e.g. log8,sign1 (default log8)")
    p.add_argument("--nodes", type=int, default=None,
                   help="scale bench: the largest simulated swarm; 10, 100, ... up to it run "
                        "too (default 1000)")
    p.add_argument("--out", default=None,
                   help="also write the JSON report (with machine, versions, command) here")

    p = sub.add_parser("demo", help="a local 3-node swarm finetuning a real model")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="own steps per node")
    p.add_argument("--workdir", default="demo-run")
    p.add_argument("--json", action="store_true")
    return parser


def _cmd_init(args: argparse.Namespace) -> int:
    from seedfl.core.config_template import default_config_text

    text = default_config_text()
    if args.model:
        text = text.replace('name = "seedfl:smollm2-135m"', f"name = {json.dumps(args.model)}", 1)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from seedfl.training.data import load_examples
    from seedfl.training.evaluate import evaluate

    if args.config:
        from seedfl.core.config import load_config
        from seedfl.training.model import load_swarm_model
        from seedfl.training.task import Task

        cfg = load_config(Path(args.config))
        bundle = load_swarm_model(cfg)
        task, engine = Task.from_config(cfg.task, bundle.tokenizer), None
    elif args.state_dir:
        from seedfl.node.offline import load_node_model

        nm = load_node_model(args.state_dir)
        cfg, bundle, task, engine = nm.config, nm.bundle, nm.task, nm.engine
    else:
        raise UsageError("seedfl eval: give --state-dir (a node's model) or --config "
                         "(the untrained base model)")
    examples = load_examples(args.data, cfg.task)
    if args.limit:
        examples = examples[: args.limit]
    if args.template:
        return _eval_prompts(args, cfg, bundle, examples)
    res = evaluate(bundle, task, examples, args.batch_size)
    out = {"loss": res.loss, "accuracy": res.accuracy, "examples": res.n,
           "updates_applied": 0 if engine is None else engine.applied_vector().total()}
    if engine is not None:
        with contextlib.suppress(OSError):  # a read-only state directory still evaluates
            from seedfl.observe.history import HISTORY_FILE, append_row, eval_row

            append_row(Path(args.state_dir) / HISTORY_FILE, eval_row(out, args.data))
    if args.json:
        print(json.dumps(out))
    else:
        acc = "" if res.accuracy is None else f"  accuracy {100 * res.accuracy:.2f}%"
        print(f"loss {res.loss:.4f}{acc}  ({res.n} examples, "
              f"{out['updates_applied']} updates applied)")
    return EXIT_OK


def _eval_prompts(args: argparse.Namespace, cfg: Any, bundle: Any, examples: Any) -> int:
    """Score several prompt templates on the node's model (the zero-shot baselines)."""
    from seedfl.training.prompts import Prompt, compare_prompts, parse_verbalizer

    labels = [label for label, _ in cfg.task.verbalizer]
    verbs = [parse_verbalizer(v, labels) for v in args.verbalizer] or [cfg.task.verbalizer]
    if len(verbs) not in (1, len(args.template)):
        raise UsageError(f"{len(verbs)} --verbalizer for {len(args.template)} --template: "
                         "give one for all, or one per template")
    prompts = [Prompt(t, verbs[i if len(verbs) > 1 else 0])
               for i, t in enumerate(args.template)]
    ranked = compare_prompts(bundle, cfg.task, prompts, examples, args.batch_size)
    rows: list[dict[str, Any]] = [
        {"template": s.prompt.template, "verbalizer": dict(s.prompt.verbalizer),
         "accuracy": s.accuracy, "loss": s.result.loss} for s in ranked]
    if args.json:
        print(json.dumps({"zero_shot": {r["template"]: r["accuracy"] for r in rows},
                          "prompts": rows, "examples": len(examples)}))
    else:
        for r in rows:
            words = "/".join(r["verbalizer"].values())
            print(f"{100 * r['accuracy']:6.2f}%  loss {r['loss']:.4f}  "
                  f"{json.dumps(r['template'])}  {words}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from seedfl.node.offline import load_node_model
    from seedfl.training.export import export_model

    nm = load_node_model(args.state_dir)
    bundle, engine = nm.bundle, nm.engine
    export_model(bundle, Path(args.out))
    print(f"exported the model at {engine.applied_vector().total()} updates to {args.out}")
    return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "init":
        return _cmd_init(args)
    if args.command == "eval":
        return _cmd_eval(args)
    if args.command == "export":
        return _cmd_export(args)
    if args.command == "plot":
        from seedfl.observe.plot import plot_command

        return plot_command(args)
    if args.command == "run":
        from seedfl.node.runtime import run_node

        return run_node(_node_options(args))
    if args.command == "certs":
        from seedfl.net.certs import certs_command

        return certs_command(args)
    if args.command == "status":
        from seedfl.cli.status import status_command

        return status_command(args)
    if args.command == "peers":
        from seedfl.cli.status import peers_command

        return peers_command(args)
    if args.command == "bench":
        from seedfl.bench.runner import bench_command

        return bench_command(args)
    if args.command == "demo":
        from seedfl.demo.run import demo_command

        return demo_command(args)
    raise UsageError(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if os.environ.get("SEEDFL_DEBUG"):
            raise
        print(f"seedfl {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


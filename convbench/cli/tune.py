"""`convbench tune MODULE:FACTORY --input-shape ...`: choose each layer's backend per pass,
write the decisions file, and time the model before and after (`convbench.flows.tune`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from convbench.cli.common import csv_list
from convbench.measure.options import add_arguments
from convbench.store import DEFAULT_DB


def add_parser(sub) -> None:
    from convbench.cli.suite import parse_shape

    p = sub.add_parser(
        "tune",
        help="choose the fastest accurate backend per layer and pass; time the model with it",
        description="Trace the model's convolutions, measure every candidate backend on each "
        "problem and pass, keep a backend only where it is within tolerance and significantly "
        "faster than torch, write the decisions file, and time the original model against "
        "convbench.optimize's end to end.",
    )
    p.add_argument("factory", metavar="PACKAGE.MODULE:FACTORY", help="callable returning the model")
    p.add_argument(
        "--input-shape", type=parse_shape, required=True, metavar="N,C,...", help="e.g. 8,3,224,224"
    )
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--train",
        action="store_true",
        help="also tune backward_data and backward_weight, and time a training step",
    )
    p.add_argument("--backends", type=csv_list, help="candidates (default: every registered)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--out", type=Path, help="decisions file (default: results/NAME.decisions.json)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument(
        "--max-rel-err",
        type=float,
        metavar="E",
        help="accept a backend only below this relative error (default: the dtype's tolerance)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    # the per-layer sampling cap, and the pace a result (per layer or end to end) may be
    # off by: the model is changed only on unflagged end-to-end evidence
    add_arguments(p, ("max_time", "max_pace"))
    p.add_argument(
        "--e2e-time",
        type=float,
        default=10.0,
        metavar="S",
        help="end-to-end timing cap per model and mode in seconds, after a warm-up of a tenth "
        "of it, at most 0.5 s (default: 10)",
    )
    p.add_argument(
        "--e2e-attempts",
        type=int,
        metavar="N",
        help="where the end-to-end evidence is flagged (a busy host), time the model again, "
        "up to N times in all, before keeping it as it was (default: once more)",
    )
    p.add_argument(
        "--no-compile",
        dest="compiled",
        action="store_false",
        help="do not time the compiled variants (torch.compile of the original and of the "
        "tuned model)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true", help="write the HTML report at the end")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    import warnings

    from rich.console import Console

    from convbench.errors import UserError
    from convbench.flows.tune import Output, Rules, Target, tune
    from convbench.measure.endtoend import timing_for
    from convbench.report.terminal import print_tables

    if args.max_time <= 0 or args.e2e_time <= 0:
        raise UserError("--max-time, --e2e-time: expected seconds > 0")
    attempts = Rules.e2e_attempts if args.e2e_attempts is None else args.e2e_attempts
    if attempts < 1:
        raise UserError(f"--e2e-attempts: expected a count >= 1, got {args.e2e_attempts}")
    if not args.max_pace > 0:
        raise UserError(f"--max-pace: expected a number > 0, got {args.max_pace}")
    console = Console(stderr=True)
    out = args.out or Path("results") / f"{args.factory.rpartition(':')[2].lower()}.decisions.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = Target(args.dtype, args.device, args.train, args.backends, args.threads)
        e2e = timing_for(args.e2e_time)
        rules = Rules(
            args.max_rel_err,
            args.alpha,
            args.max_time,
            e2e,
            args.max_pace,
            args.compiled,
            attempts,
        )
        say = lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
        output = Output(not args.quiet, console, args.command_line, say)
        result = tune(
            args.factory, args.input_shape, target, rules, db=args.db, out=out, output=output
        )
    for message in notes(caught):
        console.print(f"[yellow]note[/]: {message}", markup=True, highlight=False)
    if result.interrupted:
        console.print(
            f"[yellow]interrupted[/]: finish with the same command (run {result.run_id} resumes)"
        )
        return 130
    tables = layer_tables(result.entries) + e2e_tables(result.records)
    print_tables(tables, "table", NOTE)
    print(f"decisions: {result.path}")
    if result.flagged:
        console.print(flagged_line(result.flagged), markup=False, highlight=False, soft_wrap=True)
    if args.report:
        from convbench.report import write_report

        print(f"report: {write_report(args.db, [result.run_id])}")
    return 0


NOTE = (
    "a layer leaves torch only within tolerance and significantly faster (Mann–Whitney); "
    "end to end: original vs optimized in interleaved rounds, speedup = original / optimized; "
    "the model keeps the tuned variant unless another is significantly faster in every mode "
    "timed, and stays as it was where the end-to-end evidence is flagged; "
    'torch.compile(original) is what one line of torch.compile gives, and "vs '
    "torch.compile\" each variant's speedup over it, from the same rounds"
)
#: Flagged per-layer results named in full at the end of a tune; the rest are counted.
NAMED = 5


def flagged_line(flagged: list[dict]) -> str:
    """What tune says of the flagged per-layer results its decisions rest on, and what to do
    (`convbench.flows.tune.flagged_results`): one line."""
    from convbench.analysis.flags import kinds

    named = []
    for f in flagged[:NAMED]:
        why = ", ".join(kinds(f["reason"])) or "flagged"
        named.append(f"{f['case']} {f['backend']} {f['direction']} ({why})")
    more = f" and {len(flagged) - NAMED} more" if len(flagged) > NAMED else ""
    return (
        f"convbench: {len(flagged)} per-layer result(s) the decisions rest on were flagged: "
        f"{', '.join(named)}{more}; those decisions may be wrong. Tune again on a quieter "
        "host into a new store (--db NEW.sqlite): this store would resume the run and keep "
        "these results; `convbench report` shows each one's reason"
    )


def layer_tables(entries: list[dict]) -> list:
    """The decisions as `convbench report` shows them (`convbench.report.tables`), as text."""
    from convbench.report.tables import DECISION_COLUMNS, decision_rows
    from convbench.report.terminal import move_constant_columns, texts

    rows = texts(decision_rows(entries))
    # a pass that is the same everywhere goes to the title: the table fits a terminal
    title = "decisions per layer and pass"
    return [move_constant_columns(title, DECISION_COLUMNS, rows, (1,))]


def e2e_tables(records: list[dict]) -> list:
    """The end-to-end comparisons as stored, as `convbench report` shows them, as text."""
    from convbench.report.tables import E2E_COLUMNS, end_to_end_rows
    from convbench.report.terminal import move_constant_columns, texts

    if not records:
        return []
    rows = texts(end_to_end_rows(records))
    return [move_constant_columns("the whole model, end to end", E2E_COLUMNS, rows, (0,))]


def notes(caught) -> list[str]:
    """The warnings raised during a tune, each distinct message once, without PyTorch's own
    deprecation notices (Inductor's compiles raise them about PyTorch's internals: nothing the
    user can act on)."""
    import torch

    torch_dir = str(Path(torch.__file__).parent)
    seen: dict[str, None] = {}
    for w in caught:
        internal = issubclass(w.category, DeprecationWarning | FutureWarning)
        if internal and str(w.filename).startswith(torch_dir):
            continue
        seen.setdefault(str(w.message), None)
    return list(seen)

"""`convbench calibrate`: how well this machine times, measured by the harness itself."""

from __future__ import annotations

import argparse

from convbench.cli.common import csv_list, percent


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="timing overheads and the smallest reliably timed kernel")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument(
        "--interference",
        action="store_true",
        help="also measure a suite quiet, quiet again and beside a busy neighbour (one core "
        "busy in random 20–200 ms bursts), with convbench and torch.utils.benchmark; "
        "a few minutes",
    )
    p.add_argument(
        "--suite", default="smoke", help="suite for --interference (default: smoke, forward)"
    )
    p.add_argument("--directions", type=csv_list, default=["forward"], help="for --interference")
    p.add_argument("--backends", type=csv_list, help="for --interference (default: the suite's)")
    p.add_argument(
        "--gate",
        action="store_true",
        help="instead: the regression gate's false-alarm and detection rates, from A/A pairs "
        "of --suite and pairs with torch slowed by 5/10/20%%, quiet and under load; "
        "22 runs of the suite: about 5 minutes on two cores",
    )
    p.add_argument("--pairs", type=int, default=10, help="for --gate: pairs per condition (10)")
    p.add_argument(
        "--threshold", type=percent, default=0.05, help="for --gate: the gate's threshold (5%%)"
    )
    p.add_argument(
        "--conditions",
        type=csv_list,
        default=["quiet", "burst load"],
        help="for --gate: quiet, burst load (both)",
    )
    p.add_argument(
        "--db", help="for --gate: keep its runs in this store (default: a temporary one)"
    )
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console
    from rich.table import Table

    from convbench.measure.calibrate import calibrate

    if args.gate:
        from convbench.cli.gate_table import calibrate_gate_command

        return calibrate_gate_command(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    cal = calibrate(args.device)
    console = Console()
    console.print(
        f"{cal.device}, {cal.threads} threads: clock overhead {cal.clock_overhead_ns:.0f} ns "
        f"per reading; timing overhead per call (empty function) {cal.empty_call_ns:.0f} ns"
    )
    table = Table(title="measured median vs plain back-to-back average")
    for column in ("kernel (conv2d)", "reference ms", "measured ms", "difference"):
        table.add_column(column, justify="right")
    for rung in cal.rungs:
        mark = "" if abs(rung.rel_diff) <= cal.tolerance else " ✗"
        table.add_row(
            rung.label,
            f"{rung.reference_ms:.5f}",
            f"{rung.measured_ms:.5f}",
            f"{rung.rel_diff:+.1%}{mark}",
        )
    console.print(table)
    smallest = cal.smallest_within_ms
    console.print(
        f"smallest kernel measured within ±{cal.tolerance:.0%}: "
        + (f"{smallest * 1e3:.1f} µs" if smallest is not None else "none")
    )
    if args.interference:
        _interference(args, console)
    return 0


def _interference(args: argparse.Namespace, console) -> None:
    from convbench.flows.interference import CONDITIONS, METHODS, interference

    def on_pass(method: str, condition: str) -> None:
        console.print(f"  measuring: {method}, {condition}", style="dim")

    console.print(f"interference: suite {args.suite!r}, {', '.join(args.directions)}")
    report = interference(args.suite, args.directions, args.backends, args.threads, on_pass=on_pass)
    console.print(
        f"{report.suite}: {report.n_tasks} tasks, first quiet medians as the truth; "
        f"load: {report.load}",
        soft_wrap=True,
    )
    # plain fixed-width text: eight columns that fit 80 characters whatever the terminal
    widths = (13, 5, 5, 5, 6, 7, 9, 10, 9)
    header = ("method", "vs", "±5%", "clean", "worst", "flagged", ">10% unfl", "ratios ±5%")
    header += ("paced ±5%",)
    lines = [_row(header, widths), "-" * (sum(widths) + len(widths) - 1)]
    short = {"convbench --no-interleave": "no-interleave", "torch.utils.benchmark": "torch"}
    for method in METHODS:
        for condition in CONDITIONS[1:]:
            a = report.agreement(method, condition)
            clean = report.agreement(method, condition, unflagged=True)
            r = report.agreement(method, condition, ratios=True)
            paced = report.agreement(method, condition, at_pace=True)
            flag = method != "torch.utils.benchmark"
            cells = (
                short.get(method, method),
                {"quiet again": "again", "burst load": "load"}[condition],
                f"{a.within_pct:.0f}%",
                f"{clean.within_pct:.0f}%" if flag else "—",
                f"{a.worst_diff:.0%}",
                str(a.flagged) if flag else "—",
                str(a.unflagged_over),
                f"{r.within_pct:.0f}%",
                f"{paced.within_pct:.0f}%" if paced.n else "—",
            )
            lines.append(_row(cells, widths))
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
    seconds = ", ".join(
        f"{short.get(m, m)} " + "/".join(f"{report.passes[(m, c)].seconds:.1f}" for c in CONDITIONS)
        for m in METHODS
    )
    console.print(f"wall time per pass (s; quiet/again/load): {seconds}")
    paces = ", ".join(
        f"{short.get(m, m)} "
        + "/".join(_us(report.passes[(m, c)].host_pace_us) for c in CONDITIONS)
        for m in METHODS
        if m != "torch.utils.benchmark"
    )
    console.print(f"host pace per pass (reference kernel, µs; quiet/again/load): {paces}")
    console.print(
        "again / load: the second quiet pass / the pass under load, against the first quiet "
        "one. ±5%: share of task medians within 5% of it (clean: the same among the "
        "results not flagged; worst: the largest difference); flagged: results the run "
        "itself marked `disturbed` (too few undisturbed samples, an unsteady median, or off pace); "
        ">10% unfl: off by more than 10% and not flagged (torch.utils.benchmark flags "
        "nothing); ratios "
        "±5%: the same for each backend's median relative to its case's geometric mean, what "
        "a comparison of algorithms rests on; paced ±5%: the ±5% share once each median is "
        "scaled by how fast the host ran a fixed reference kernel while it was measured, "
        "against while the truth was (how much of the disagreement is the host's pace, "
        "which no in-guest signal shows). Methods: "
        "convbench as `convbench run` measures, with --no-interleave, and torch = "
        "torch.utils.benchmark's adaptive_autorange (max_run_time = --max-time's default)."
    )


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _row(cells, widths) -> str:
    first, *rest = zip(cells, widths, strict=True)
    text = [f"{first[0]:<{first[1]}}"]
    text += [f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(rest)]
    return " ".join(text)

"""The column registry: every column of a result, declared once.

Each `Column` has its name, SQL type, unit, description and how it is shown. Everything that
shows or stores a result column derives from `RESULTS`: the SQLite schema
(`convbench.store.schema`), the typed record (`convbench.store.record.Result`), the DataFrame
dtypes (`convbench.store.frames.load`), the report's result table
(`convbench.report.tables.result_table`) and the docs' metric reference
(`reference_markdown`).

Adding a metric is one entry here plus the code that measures it (it sets the field on the
worker's `Result`). A store written before the column existed gains it when it opens
(`convbench.store.sqlite.Store`), with NULL in the old rows.

``display``: ``main`` (the report's table), ``detail`` (shown with "all columns"), ``hidden``
(stored and in the frames, not in the table). ``stored=False`` marks a column the report
computes from stored ones (its description says how).
"""

from __future__ import annotations

from dataclasses import dataclass

PY_TYPES = {"TEXT": str, "REAL": float, "INTEGER": int}
DISPLAYS = ("main", "detail", "hidden")


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # TEXT, REAL or INTEGER, optionally followed by a constraint (NOT NULL)
    description: str
    unit: str = ""
    display: str = "hidden"
    label: str = ""  # the report's header; the name when empty
    digits: int = 4  # significant digits shown
    stored: bool = True
    frame_name: str = ""  # its name in `convbench.results.load`'s frame, when not ``name``
    #: What the rows of a store written before the column existed read as (None: NULL).
    before: str | None = None

    def __post_init__(self) -> None:
        if self.sql_type not in PY_TYPES:
            raise ValueError(f"column {self.name!r}: field 'sql': unknown type {self.sql!r}")
        if self.display not in DISPLAYS:
            raise ValueError(f"column {self.name!r}: field 'display': {self.display!r}")

    @property
    def sql_type(self) -> str:
        return self.sql.split()[0]

    @property
    def py_type(self) -> type:
        return PY_TYPES[self.sql_type]

    @property
    def header(self) -> str:
        """The column's header: its label (or name) and unit, ``median [ms]``."""
        text = self.label or self.name
        return f"{text} [{self.unit}]" if self.unit and self.unit not in text else text

    @property
    def in_frame(self) -> str:
        return self.frame_name or self.name


C = Column
RESULTS: tuple[Column, ...] = (
    # What was measured: shown first in the report's table.
    C("case_name", "TEXT", "The case's name in its suite.", display="main", label="case",
      frame_name="case"),
    C("backend", "TEXT", "The backend (algorithm) measured.", display="main"),
    C("device", "TEXT", "cpu, cuda or cuda:N.", display="main"),
    C("dtype", "TEXT", "float32, float16, bfloat16 or float64.", display="main"),
    C("direction", "TEXT", "The direction: one pass (forward, backward_data, "
      "backward_weight), or backward or train (all three).", display="main"),
    C("layout", "TEXT", "The memory format of the input, weight and upstream gradient: "
      "contiguous or channels_last (`convbench.problem.layout`).", display="main",
      before="contiguous"),
    C("status", "TEXT NOT NULL", "ok, unsupported, oom, error or timeout "
      "(`convbench.store.STATUSES`).", display="main"),
    C("median_ms", "REAL", "Median time of one call over the clean samples.", "ms",
      display="main", label="median"),
    C("ci95_ms", "REAL", "The 95% confidence interval of the median (binomial order statistics), "
      "from ci_low_ms and ci_high_ms.", "ms", display="main", label="95% CI of median",
      stored=False),
    C("gflops", "REAL", "Useful floating-point work over the median time (flops / median).",
      "GFLOP/s", display="main", label="GFLOP/s"),
    C("pct_of_peak", "REAL", "gflops over the device's measured matrix-multiply peak for the "
      "dtype (the run's peaks).", "%", display="main", label="% of peak", digits=3,
      stored=False),
    C("peak_mem_bytes", "INTEGER", "Peak memory of one call above what was allocated before "
      "it (CUDA allocator statistics, or the CPU allocator's tracked peak); the report shows "
      "it in the unit that fits the results.", "bytes", display="main", label="peak mem",
      digits=3),
    C("rel_err", "REAL", "Largest error relative to the float64 reference's scale.",
      display="main", label="rel. error", digits=2),
    C("within_tol", "INTEGER", "Whether rel_err is within the dtype's tolerance.",
      display="main", label="within tol.", stored=False),
    C("reason", "TEXT", "Why a result is not ok, or why it is flagged.", display="main",
      label="reason / flag"),
    # Timing detail.
    C("iqr_ms", "REAL", "Interquartile range of the clean samples.", "ms", display="detail",
      label="IQR"),
    C("n_samples", "INTEGER", "Clean samples the statistics use.", "n", display="detail",
      label="samples"),
    C("n_discarded", "INTEGER", "Samples dropped as disturbed (schedstat waits, SM clock).",
      "n", display="detail", label="disturbed samples"),
    C("out_layout", "TEXT", "The layout the pass's result came out in (contiguous, "
      "channels_last, or strided: neither).", display="detail", label="output layout"),
    C("prepare_ms", "REAL", "Median time of the backend's prepare (per-weight work).", "ms",
      display="detail", label="prepare"),
    C("gpu_util_pct", "REAL", "NVML GPU utilisation while timing.", "%", display="detail",
      label="GPU util"),
    C("sm_clock_mhz", "REAL", "Mean SM clock while timing (NVML).", "MHz", display="detail",
      label="SM clock"),
    C("power_w", "REAL", "Mean board power while timing (NVML).", "W", display="detail",
      label="power"),
    C("energy_j", "REAL", "Energy over the timed window (NVML counter).", "J",
      display="detail", label="energy"),
    C("energy_per_call_j", "REAL", "energy_j over the calls timed.", "J", display="detail",
      label="energy per call"),
    C("cpu_util_pct", "REAL", "Process CPU time over wall time × threads while timing.", "%",
      display="detail", label="CPU util"),
    C("pace_us", "REAL", "The pace reference kernel's median reading meanwhile "
      "(`convbench.measure.pace`).", "µs", display="detail", label="host pace"),
    C("pace", "REAL", "pace_us over this machine's usual reading: above 1 + max_pace, the "
      "result is flagged.", display="detail", label="pace vs usual"),
    C("torch_threads", "INTEGER", "torch.get_num_threads() in the worker.", display="detail",
      label="threads"),
    C("stop_reason", "TEXT", "Why sampling stopped: ci (the median's interval was narrow "
      "enough), time_cap or max_samples.", display="detail", label="stop reason"),
    C("mode", "TEXT", "warm or cold (caches flushed / inputs rotated before each sample).",
      display="detail"),
    C("cuda_timing", "TEXT", "How CUDA blocks were timed: events, graph or blocking.",
      display="detail", label="CUDA timing"),
    C("timing_note", "TEXT", "Why a timing method fell back, e.g. graph capture to events.",
      display="detail", label="timing note"),
    C("beside", "TEXT", "What else of the run computed while this result was timed "
      "(`convbench.runner.isolation`).", display="detail", label="ran beside"),
    # Stored, not in the table.
    C("run_id", "TEXT NOT NULL", "The run the result belongs to."),
    C("result_key", "TEXT NOT NULL", "The task's key: problem, backend, dtype, device, pass."),
    C("case_id", "TEXT", "The case's stable id (its problem key)."),
    C("suite", "TEXT", "The suite's name."),
    C("count", "INTEGER", "How many layers of the model the case stands for."),
    C("problem_json", "TEXT", "The convolution problem (`ConvProblem.to_dict`)."),
    C("nd", "INTEGER", "Spatial dimensions: 1 or 2."),
    C("batch", "INTEGER", "Batch size."),
    C("flops", "REAL", "Floating-point operations of one call of the pass.", "flop"),
    C("mean_ms", "REAL", "Mean of the clean samples.", "ms"),
    C("std_ms", "REAL", "Standard deviation of the clean samples.", "ms"),
    C("min_ms", "REAL", "Fastest clean sample.", "ms"),
    C("ci_low_ms", "REAL", "Lower end of the median's 95% confidence interval.", "ms"),
    C("ci_high_ms", "REAL", "Upper end of the median's 95% confidence interval.", "ms"),
    C("block_size", "INTEGER", "Calls per timed sample (keeps clock overhead under 1%)."),
    C("disturbed", "INTEGER", "1 when the result is flagged: too many disturbed samples, "
      "unsteady, or the host off its usual pace."),
    C("round_group", "TEXT", "The interleaved group the result was timed in (case, dtype, "
      "device, pass), or empty when timed alone."),
    C("saved_bytes", "INTEGER", "Bytes a training forward keeps for the backward passes.",
      "bytes"),
    C("dispatch", "TEXT", "The kernel family the vendor dispatch chose (torch, onednn, cudnn); "
      "on cuDNN with its math mode and autotuner, e.g. `Cudnn (TF32)`."),
    C("options_json", "TEXT", "What the backend's plan chose (tile size, FFT size, …)."),
    C("mem_method", "TEXT", "How peak memory was measured."),
    C("max_abs_err", "REAL", "Largest absolute error against the float64 reference."),
    C("mem_util_pct", "REAL", "NVML memory-controller utilisation while timing.", "%"),
    C("temp_c", "REAL", "GPU temperature while timing (NVML).", "°C"),
    C("throttle_reasons", "TEXT", "NVML clock-throttle reasons seen while timing."),
    C("telemetry_note", "TEXT", "Why a telemetry figure is missing."),
    C("threads", "INTEGER", "CPU threads the worker measured with (its affinity)."),
    C("node", "TEXT", "Host name of the machine that measured."),
    C("node_json", "TEXT", "That machine: host name, CPU, GPUs."),
    C("started_at", "REAL", "When measuring the task began (Unix time).", "s"),
    C("finished_at", "REAL", "When measuring the task ended (Unix time).", "s"),
)  # fmt: skip
del C

BY_NAME: dict[str, Column] = {c.name: c for c in RESULTS}
STORED: tuple[Column, ...] = tuple(c for c in RESULTS if c.stored)
#: The names of the stored columns, in schema order.
STORED_NAMES: tuple[str, ...] = tuple(c.name for c in STORED)
#: Columns shown in the report's result table, in order.
SHOWN: tuple[Column, ...] = tuple(c for c in RESULTS if c.display != "hidden")
#: Column names that differ in `convbench.results.load`'s frame.
FRAME_RENAMES: dict[str, str] = {c.name: c.frame_name for c in RESULTS if c.frame_name}
#: What the rows of an older store read as, in the columns it lacked (frame names).
BEFORE: dict[str, str] = {c.in_frame: c.before for c in STORED if c.before is not None}


def frame_dtypes() -> dict[str, str]:
    """The frame's dtype of each stored column: REAL as float64 (NULL as NaN), TEXT as
    object; INTEGER as pandas reads it (int64, or float64 where a value is NULL)."""
    kinds = {"REAL": "float64", "TEXT": "object"}
    return {c.in_frame: kinds[c.sql_type] for c in STORED if c.sql_type in kinds}


def reference_markdown() -> str:
    """The metric reference: one table of every column (docs/metrics.md is built from it)."""
    lines = ["| column | type | unit | shown | description |", "|---|---|---|---|---|"]
    for c in RESULTS:
        shown = c.display if c.stored else f"{c.display} (computed)"
        name = c.in_frame if not c.frame_name else f"{c.name} (frame: {c.frame_name})"
        description = c.description.replace("|", "\\|")
        lines.append(f"| `{name}` | {c.sql_type} | {c.unit} | {shown} | {description} |")
    return "\n".join(lines) + "\n"

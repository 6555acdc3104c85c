"""The study's report: ``study.md`` (tables shaped like the paper's Tables 5-7 with each
multi-task row's difference to its single-task baseline, the automatic-annotation quality and
a verdict per claim) and ``fig5.png`` (ReID mAP against the training fraction, as Fig. 5).

Numbers are means over seeds ± the sample standard deviation (n - 1) over seeds, in %.
A difference to a baseline pairs the seeds both rows ran; its spread is the standard deviation
of the paired differences, and its 95 % interval a t interval over seeds and, where both rows
scored the same test items (ReID queries, paired by id), over items as well
(personkit/study/stats.py: conservative, and labelled with what it covers).

The verdict rule: a claim **holds** / **does not hold** when the 95 % interval of its paired
difference lies wholly on the expected / the opposite side of zero, and is **inconclusive**
when it contains zero or when fewer than two seeds pair (one seed measures nothing of the
training randomness). Until issue 39 a second, "sign" rule (every seed pair agrees and the mean
exceeds the spread: about t > 1.7, an 89 % one-sided test with 3 seeds) had to agree with a
percentile-bootstrap interval that could not reach past the extreme seeds; the t interval
alone is the stricter and the stated one.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from personkit.runtime import describe_machine, machine_info
from personkit.study.stats import Interval, paired_interval

#: Per-item values behind a metric (paired by their ``query`` ids): score -> item key.
ITEMS = {"mAP": "AP", "rank1": "rank1"}


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of study ``name``'s results section in a report file."""
    return (f"<!-- personkit study: begin results of {name} (written by `personkit study "
            f"--report`) -->", f"<!-- personkit study: end results of {name} -->")


def lookup(metrics: dict[str, Any], path: str) -> float | None:
    """``market.reid.mAP`` -> ``metrics["market"]["reid"]["mAP"]`` (None if missing)."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def values(records: list[dict], row: str, path: str) -> dict[int, float]:
    """Seed -> value of ``path`` for ``row``."""
    out = {}
    for r in records:
        if r["row"] == row:
            v = lookup(r.get("metrics") or {}, path)
            if v is not None:
                out[r["seed"]] = v
    return out


def item_values(records: list[dict], row: str, path: str
                ) -> dict[int, dict[int, float]]:
    """Seed -> {test item id: value} for the per-item values whose mean is ``path``
    (``market.reid.mAP`` -> each query's AP, by its position in the query list), for rows
    whose records carry them (:data:`ITEMS`); records from before item ids pair by order."""
    head, _, score = path.rpartition(".")
    if score not in ITEMS:
        return {}
    out = {}
    for r in records:
        if r["row"] == row:
            node = (r.get("metrics") or {})
            for part in [*head.split("."), "per_query"]:
                node = node.get(part) if isinstance(node, dict) else None
            values = node.get(ITEMS[score]) if isinstance(node, dict) else None
            if isinstance(values, list | np.ndarray) and len(values):
                ids = node.get("query", range(len(values)))
                out[r["seed"]] = dict(zip((int(i) for i in ids), map(float, values),
                                          strict=True))
    return out


def interval(records: list[dict], row: str, base: str, path: str) -> Interval | None:
    """The t interval of row - base (:func:`~personkit.study.stats.paired_interval`): over
    the seeds both ran and, where both scored test items, over the items both scored (paired
    by id); None without common seeds, or with one seed and no items."""
    a, b = values(records, row, path), values(records, base, path)
    common = sorted(set(a) & set(b))
    if not common:
        return None
    ia, ib = item_values(records, row, path), item_values(records, base, path)
    if all(s in ia and s in ib for s in common):
        items = sorted(set.intersection(*(set(ia[s]) & set(ib[s]) for s in common)))
        if len(items) > 1:
            return paired_interval(np.array([[ia[s][i] - ib[s][i] for i in items]
                                             for s in common]))
    return paired_interval(np.array([a[s] - b[s] for s in common]))


def _mean_sd(xs: list[float]) -> tuple[float, float | None]:
    a = np.asarray(xs, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else None


def _fmt(mean: float, sd: float | None, signed: bool = False) -> str:
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return text + ("" if sd is None else f" ± {100 * sd:.1f}")


def difference(records: list[dict], row: str, base: str, path: str
               ) -> tuple[list[float], bool]:
    """Per-seed differences row - base over the seeds both ran (paired=True), else the
    single difference of the means (paired=False); [] if either is missing."""
    a, b = values(records, row, path), values(records, base, path)
    common = sorted(set(a) & set(b))
    if common:
        return [a[s] - b[s] for s in common], True
    if a and b:
        return [float(np.mean(list(a.values())) - np.mean(list(b.values())))], False
    return [], False


def table_markdown(table: dict, records: list[dict], labels: dict[str, str] | None = None
                   ) -> str:
    """One table: a row per study row, a column per metric, Δ to the baseline in brackets;
    a row is shown with its table label, else its spec label (``labels``), else its name."""
    cols = table["metrics"]
    lines = [f"### {table.get('title', 'Table')}", ""]
    lines += ["| Row | seeds | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in table.get("rows") or []:
        cells = []
        seeds = set()
        for path in cols.values():
            v = values(records, r["row"], path)
            seeds |= set(v)
            if not v:
                cells.append("–")
                continue
            cell = _fmt(*_mean_sd(list(v.values())))
            if r.get("baseline"):
                d, _ = difference(records, r["row"], r["baseline"], path)
                ci = interval(records, r["row"], r["baseline"], path)
                if d:
                    cell += f" ({_fmt(*_mean_sd(d), signed=True)}" + (
                        f"; [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}])" if ci else ")")
            cells.append(cell)
        label = r.get("label") or (labels or {}).get(r["row"], r["row"])
        label += f" (vs {r['baseline']})" if r.get("baseline") else ""
        lines.append(f"| {label} | {len(seeds)} | " + " | ".join(cells) + " |")
    if table.get("note"):
        lines += ["", str(table["note"]).strip()]
    return "\n".join(lines)


def verdict(records: list[dict], claim: dict) -> tuple[str, str]:
    """(holds | does not hold | inconclusive | not run, the numbers behind it): the claim
    holds when the 95 % interval of the paired difference lies on its side of zero, does not
    hold when it lies on the other, and is inconclusive when it contains zero or fewer than
    two seeds pair (docs/study.md, "The verdict rule")."""
    d, paired = difference(records, claim["row"], claim["baseline"], claim["metric"])
    if not d:
        return "not run", "no results for one of the rows"
    sign = 1 if claim.get("expect", "higher") == "higher" else -1
    mean, sd = _mean_sd(d)
    numbers = (f"{claim['metric']}: {claim['row']} − {claim['baseline']} = "
               f"{_fmt(mean, sd, signed=True)} points over {len(d)} "
               f"{'paired seed(s)' if paired else 'unpaired mean(s)'}")
    if len(d) < 2 or not paired:
        return "inconclusive", numbers + " (one seed: the training randomness is not measured)"
    ci = interval(records, claim["row"], claim["baseline"], claim["metric"])
    numbers += f"; {ci.text()}"
    return {1: "holds", -1: "does not hold", 0: "inconclusive"}[ci.side() * sign], numbers


def annotation_markdown(records: list[dict]) -> str:
    rows = []
    for r in records:
        s = (r.get("metrics") or {}).get("annotations")
        if r.get("kind") == "annotate" and s:
            p, q = s["pose"], s["parts"]
            rows.append(f"| {r['row']} | {r['seed']} | {100 * p['Mean']:.1f} | "
                        f"{100 * p['UBody']:.1f} | {100 * q['mIoU']:.1f} | "
                        f"{100 * q['mIoU5']:.1f} | {p['num_images']} |")
    if not rows:
        return "No scored annotation step in this study."
    return "\n".join(["| Step | seed | PCKh@0.5 | UBody | mIoU (20) | mIoU5 | crops |",
                      "|---|---|---|---|---|---|---|", *rows])


def plot_fig5(study: Any, records: list[dict], path: Path) -> Path | None:
    """ReID mAP (first ReID dataset) against the training fraction, one curve per
    ``fig5.curve``, mean ± seed spread; None if no row has ``fig5``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[float, list[float]]] = {}
    for job in study.jobs:
        if job.fig5 is None:
            continue
        for r in records:
            if r["row"] == job.row and r["seed"] == job.seed:
                mAP = next((lookup(m, "reid.mAP") for m in (r.get("metrics") or {}).values()
                            if lookup(m, "reid.mAP") is not None), None)
                if mAP is not None:
                    curves.setdefault(job.fig5["curve"], {}).setdefault(
                        job.fig5["fraction"], []).append(100 * mAP)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, pts in curves.items():
        xs = sorted(pts)
        mean = np.array([np.mean(pts[x]) for x in xs])
        sd = np.array([np.std(pts[x], ddof=1) if len(pts[x]) > 1 else 0.0 for x in xs])
        ax.errorbar(xs, mean, yerr=sd, marker="o", capsize=3, label=name)
        ax.fill_between(xs, mean - sd, mean + sd, alpha=0.15)
    ax.set_xlabel("fraction of the ReID training set")
    ax.set_ylabel("ReID mAP (%)")
    ax.set_title("Fig. 5: mAP vs. training-set size (mean ± seed s.d.)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _sharing(records: list[dict]) -> str:
    """How the runs shared the machine, from their records (``--jobs`` and torch threads)."""
    kinds: dict[tuple[int, int], int] = {}
    for r in records:
        if "sharing" in r:
            key = (r["sharing"]["jobs"], r["sharing"]["threads"])
            kinds[key] = kinds.get(key, 0) + 1
    if not kinds:
        return ""
    parts = [f"{n} run{'s' * (n > 1)} {jobs} at a time with {threads} torch thread"
             f"{'s' * (threads > 1)} each" for (jobs, threads), n in sorted(kinds.items())]
    unknown = len(records) - sum(kinds.values())
    if unknown:
        parts.append(f"{unknown} from before the runner recorded how runs shared the CPU")
    return "; " + ", ".join(parts)


def _resumed(records: list[dict]) -> str:
    n = sum(bool(r.get("resumed")) for r in records)
    return (f"; {n} run{'s' * (n > 1)} resumed after an interruption, whose time before it is "
            "not counted" if n else "")


def dose_points(study: Any, records: list[dict], dose: dict, curve: dict
                ) -> list[tuple[float, Interval]]:
    """(x, interval of row - baseline) for each value of ``dose['x']`` in the curve's grid."""
    x = dose["x"]
    rows = {j.row: j for j in study.jobs}  # one job per row: its name, base name and grid
    baselines = {tuple(j.grid.items()): j.row for j in rows.values()
                 if j.base == curve["baseline"]}
    pts = []
    for job in rows.values():
        base = baselines.get(tuple(job.grid.items()))
        if job.base == curve["row"] and x in job.grid and base:
            ci = interval(records, job.row, base, dose["metric"])
            if ci:
                pts.append((float(job.grid[x]), ci))
    return sorted(pts, key=lambda p: p[0])


def plot_dose(study: Any, records: list[dict], dose: dict, path: Path) -> Path | None:
    """A dose-response figure: each curve's paired difference (mean and 95 % interval)
    against the grid variable ``dose['x']``; None when no point has results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(c, dose_points(study, records, dose, c)) for c in dose["curves"]]
    if not any(pts for _, pts in curves):
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, (c, pts) in enumerate(curves):
        if not pts:
            continue
        xs = np.array([p[0] for p in pts]) + 0.012 * (k - (len(curves) - 1) / 2)
        mean = np.array([100 * p[1].mean for p in pts])
        err = np.array([[100 * (p[1].mean - p[1].low), 100 * (p[1].high - p[1].mean)]
                        for p in pts]).T
        ax.errorbar(xs, mean, yerr=err, marker="o", capsize=3,
                    label=c.get("label") or f"{c['row']} − {c['baseline']}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel(dose["x"])
    ax.set_ylabel(f"difference in {dose['metric']} (points)")
    ax.set_title(dose.get("title", "dose response") + " (mean, 95 % CI)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def dose_markdown(study: Any, records: list[dict], dose: dict, fig: str | None) -> str:
    """A dose figure's table (one line per curve and x) and its picture."""
    lines = [f"### {dose.get('title', 'Dose response')}", "",
             f"| Curve | {dose['x']} | seeds | difference (points) | 95 % CI |",
             "|---|---|---|---|---|"]
    for c in dose["curves"]:
        for x, ci in dose_points(study, records, dose, c):
            lines.append(f"| {c.get('label') or c['row']} | {x:g} | {ci.seeds} | "
                         f"{100 * ci.mean:+.1f} | [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}] |")
    return "\n".join([*lines, "", f"![{dose.get('title', 'dose')}]({fig})" if fig else
                      "No results for this figure yet.", ""])


def results_markdown(study: Any, records: list[dict], fig: str | None,
                     doses: list[str | None] = ()) -> str:
    """The results section: command, machine, time, tables, figures, annotations, claims."""
    total = sum(r.get("seconds", {}).get("total", 0.0) for r in records)
    jobs = len(study.jobs)
    worlds = [f"{w}: {root}" for root, w in study.worlds().items()]
    parts = [f"Study `{study.name}` ({study.spec_path}), written by the runner on "
             f"{time.strftime('%Y-%m-%d %H:%M')}. Command: `personkit study {study.spec_path} "
             f"--out {study.out}`.", "",
             f"* Machine: {describe_machine(machine_info())}.",
             f"* Runs recorded: {len(records)} of {jobs}; total time {total / 60:.1f} min "
             f"(sum over runs of training + evaluation){_sharing(records)}{_resumed(records)}.",
             f"* World{'s' * (len(worlds) > 1)}: {'; '.join(worlds) or 'real data'}"
             + ("" if worlds else f"; data root {study.data_root}") + ".", ""]
    labels = {j.row: j.label for j in study.jobs}
    parts += [table_markdown(t, records, labels) + "\n" for t in study.tables]
    for d, f in zip(study.dose, doses, strict=False):
        parts.append(dose_markdown(study, records, d, f))
    if any(j.fig5 for j in study.jobs):
        parts += ["### Fig. 5", "", f"![Fig. 5]({fig})" if fig else "No results yet.", ""]
    if any(j.kind == "annotate" for j in study.jobs):
        parts += ["### Automatic-annotation quality (against the hidden ground truth)", "",
                  annotation_markdown(records), ""]
    if study.claims:
        parts += ["### Claims", "", "| Claim | Verdict | Numbers | Note |", "|---|---|---|---|"]
        for c in study.claims:
            v, numbers = verdict(records, c)
            note = " ".join(str(c.get("note", "")).split())
            parts.append(f"| {c['claim']} | **{v}** | {numbers} | {note} |")
        parts.append("")
    return "\n".join(parts)


def _copy_next_to(report: Path, fig: Path | None, name: str, what: str) -> str | None:
    """Copy a figure next to the report as ``<report stem>_<study>_<what>.png``."""
    if fig is None:
        return None
    dest = report.parent / f"{report.stem}_{name}_{what}.png"
    report.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fig, dest)
    return dest.name


def write_outputs(study: Any, records: list[dict], report: str | Path | None
                  ) -> dict[str, Any]:
    """``study.md``, ``fig5.png``, ``dose<i>.png`` and, with ``report``, its results section
    between the study's :func:`markers` (appended if absent). Only records of the current
    spec's (row, seed, config hash) count."""
    keys = {j.key for j in study.jobs}
    records = [r for r in records if (r["row"], r["seed"], r["config_hash"]) in keys]
    fig = plot_fig5(study, records, study.out / "fig5.png")
    doses = [plot_dose(study, records, d, study.out / f"dose{i}.png")
             for i, d in enumerate(study.dose)]
    md = study.out / "study.md"
    md.write_text(f"# Study {study.name}\n\n" + results_markdown(
        study, records, fig and fig.name, [d and d.name for d in doses]), encoding="utf-8")
    out: dict[str, Any] = {"study_md": md, "fig5": fig, "dose": doses}
    if report is not None:
        report = Path(report)
        rel = [_copy_next_to(report, d, study.name, f"dose{i}") for i, d in enumerate(doses)]
        body = results_markdown(study, records, _copy_next_to(report, fig, study.name, "fig5"),
                                rel)
        begin, end = markers(study.name)
        section = f"{begin}\n\n{body}\n{end}"
        text = report.read_text(encoding="utf-8") if report.is_file() else ""
        if begin in text and end in text:
            text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
        else:
            text = text.rstrip() + ("\n\n" if text else "") + section + "\n"
        report.write_text(text, encoding="utf-8")
        out["report"] = report
    return out

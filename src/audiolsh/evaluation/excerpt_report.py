"""Reports of the excerpt protocol: Markdown tables, the issue's targets, PNG plots."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from audiolsh.errors import ParameterError
from audiolsh.evaluation.metrics import bootstrap_ci

__all__ = ["LABELS", "targets_markdown", "to_markdown", "write_plots"]

LABELS = {
    "s2_bands": "S2 band \"beat spectrum\"",
    "beat_spectrum": "Foote beat spectrum",
    "rhythm": "rhythm (log-lag onset ACF)",
    "timbre": "timbre (MFCC stats + spectral pattern)",
    "chroma_vote": "chroma vote (S1)",
    "peaks_minhash": "MinHash peak pairs (S4)",
    "combined": "combined (rhythm+timbre+peaks)",
}


def to_markdown(result: dict[str, Any]) -> str:
    """The result tables as Markdown."""
    p = result["protocol"]
    k = p["k"]
    lines = [
        f"{p['n_tracks']} tracks of at least {p['min_track_s']:g} s ({p['n_skipped']} skipped), "
        f"{p['n_targets']} targets; excerpts of {p['window_s']:g} s at {p['offsets_s']} s; "
        f"LSH over {p['seeds']} seeds; learned normalisation: {p.get('normalisation', 'none')}.",
        "",
        f"| method | exact acc@{k} (95 % CI over tracks) | LSH acc@{k} mean ± std (min-max) | LSH / exact "
        "| exact ms/query | LSH ms/query | own track first / MRR (exact, tracks) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, s in result["summary"].items():
        ci = s.get("exact_ci") or [math.nan, math.nan]
        lines.append(
            f"| {LABELS.get(m, m)} | {s['exact']:.3f} ({ci[0]:.3f}-{ci[1]:.3f}) | "
            f"{s['lsh_mean']:.3f} ± {s['lsh_std']:.3f} "
            f"({s['lsh_min']:.3f}-{s['lsh_max']:.3f}) | {s['lsh_over_exact']:.3f} | {s['exact_ms']:.3f} | "
            f"{s['lsh_ms']:.3f} | {s.get('track_first', math.nan):.3f} / {s.get('track_mrr', math.nan):.3f} |"
        )
    methods = list(result["summary"])
    lines += ["", f"Accuracy@{k} as the number of tracks grows (exact / LSH; mean over random subsets):", "",
              "| tracks | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
              "|---" * (len(methods) + 1) + "|"]
    for g in result["growth"]:
        cells = [f"{g['exact'][m]:.3f} / {g['lsh'][m]:.3f}" for m in methods]
        lines.append(f"| {g['n_tracks']} | " + " | ".join(cells) + " |")
    if result["timing"]:
        lines += ["", f"Time per query (ms, one query at a time) over every {p['window_s']:g}-s window "
                      f"with a {p['dense_hop_s']:g}-s hop of the tracks; exact / LSH (speed-up, LSH top-{k} "
                      "recall against exact):", "",
                  "| windows | tracks | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
                  "|---" * (len(methods) + 2) + "|"]
        for row in result["timing"]:
            cells = [
                f"{t['exact_ms']:.2f} / {t['lsh_ms']:.2f} ({t['speedup']:.1f}x, {t['recall_vs_exact']:.2f})"
                for t in (row["methods"][m] for m in methods)
            ]
            lines.append(f"| {row['n_excerpts']} | {row['n_tracks']} | " + " | ".join(cells) + " |")
    lines += ["", "Targets of issue #3:", "", *targets_markdown(result)]
    return "\n".join(lines) + "\n"


def targets_markdown(result: dict[str, Any], *, big: int = 10_000) -> list[str]:
    """The issue's targets, measured: rhythm >= 1.5 x Foote, best mode >= 0.85, LSH >= 0.97 x
    exact, and LSH >= 5x faster than exact from ``big`` excerpts on (table rows)."""
    S, k = result["summary"], result["protocol"]["k"]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    rows = ["| target | measured | met |", "|---|---|---|"]
    if not S:
        return rows
    if "rhythm" in S and "beat_spectrum" in S:
        rh, fo = S["rhythm"]["exact"], S["beat_spectrum"]["exact"]
        ratio = rh / fo if fo else math.inf
        interval = ""
        if "exact_per_query" in S["rhythm"] and "exact_per_query" in S["beat_spectrum"]:
            lo, hi = bootstrap_ci(S["rhythm"]["exact_per_query"], over=S["beat_spectrum"]["exact_per_query"])
            interval = f" (95 % CI {lo:.2f}-{hi:.2f}x)"
        rows.append(f"| rhythm >= 1.5 x Foote (exact acc@{k}) | {rh:.3f} / {fo:.3f} = {ratio:.2f}x"
                    f"{interval} | {met(ratio >= 1.5)} |")
    best = max(S, key=lambda m: S[m]["exact"])
    ci = S[best].get("exact_ci")
    interval = f" (95 % CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    rows.append(f"| best mode >= 0.85 (exact acc@{k}) | {LABELS.get(best, best)}: {S[best]['exact']:.3f}"
                f"{interval} | {met(S[best]['exact'] >= 0.85)} |")
    for m, s in S.items():
        rows.append(f"| LSH >= 0.97 x exact: {LABELS.get(m, m)} | {s['lsh_mean']:.3f} / {s['exact']:.3f} = "
                    f"{s['lsh_over_exact']:.3f} | {met(s['lsh_over_exact'] >= 0.97)} |")
    timed = [row for row in result["timing"] if row["n_excerpts"] >= big]
    for m in S if timed else ():
        speedups = [row["methods"][m]["speedup"] for row in timed]
        sizes = ", ".join(str(row["n_excerpts"]) for row in timed)
        rows.append(f"| LSH >= 5x faster than exact at >= {big // 1000}k excerpts: {LABELS.get(m, m)} | "
                    + ", ".join(f"{x:.1f}x" for x in speedups) + f" ({sizes} excerpts) | "
                    f"{met(min(speedups) >= 5)} |")
    return rows


def write_plots(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Accuracy vs tracks and LSH vs exact time per query as PNGs; returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ParameterError("plots need matplotlib: pip install matplotlib") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = list(result["summary"])
    k = result["protocol"]["k"]
    files = []
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    for i, m in enumerate(methods):
        n = [g["n_tracks"] for g in result["growth"]]
        color = f"C{i}"
        ax.plot(n, [g["exact"][m] for g in result["growth"]], "o-", color=color, label=LABELS.get(m, m))
        ax.plot(n, [g["lsh"][m] for g in result["growth"]], "x--", color=color, alpha=0.7)
    ax.set_xlabel("tracks in the collection")
    ax.set_ylabel(f"accuracy@{k}")
    ax.set_title("Excerpt retrieval: exact (solid) and LSH (dashed)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    files.append(_save(plt, fig, ax, out / "excerpts_accuracy_vs_tracks.png"))
    if result["timing"]:
        fig, ax = plt.subplots(figsize=(9.5, 4.8))
        sizes = [r["n_excerpts"] for r in result["timing"]]
        for i, m in enumerate(methods):
            color = f"C{i}"
            ax.plot(sizes, [r["methods"][m]["exact_ms"] for r in result["timing"]], "o-", color=color,
                    label=LABELS.get(m, m))
            lsh_ms = [r["methods"][m]["lsh_ms"] for r in result["timing"]]
            ax.plot(sizes, lsh_ms, "x--", color=color, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("excerpts in the collection (10-s windows)")
        ax.set_ylabel("ms per query")
        ax.set_title("Time per query: exact (solid) vs LSH (dashed)")
        ax.grid(alpha=0.3, which="both")
        files.append(_save(plt, fig, ax, out / "excerpts_time_vs_size.png"))
    return files


def _save(plt: Any, fig: Any, ax: Any, path: Path) -> Path:
    """Legend outside the axes, tight layout, PNG at 110 dpi; the figure is closed."""
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

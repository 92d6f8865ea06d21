"""Score a validation JSON of the held-out studies and print markdown tables (docs/validation.md).

    hpgsim validate studies/holdout --json docs/holdout_results.json
    python tools/holdout_table.py docs/holdout_results.json [studies/holdout]

Prints the summary, a per-study table and one row per observation (observed, simulated with its 95% CI,
within the issue's tolerance, direction right). The scoring is hpgsim's (`hpgsim.validation.score`).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from hpgsim.validation.score import score_study, summarize
from hpgsim.validation.studies import load_studies


def main(result_json: str, folder: str = "studies/holdout") -> None:
    rows = json.loads(Path(result_json).read_text(encoding="utf-8"))
    by_study: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_study[r["study"]].append(r)
    studies = {s.id: s for s in load_studies([Path(folder)])}
    scored = []
    for sid, rs in by_study.items():
        scored += score_study(studies[sid], rs)
    s = summarize(scored)
    print(
        f"**{s['within']}/{s['observations']} within ({100 * s['within_fraction']:.1f}%), "
        f"{s['directions_right']}/{s['directions']} directions right**\n"
    )
    print("| study | within | directions right |\n|---|---|---|")
    per: dict[str, list[dict]] = defaultdict(list)
    for r in scored:
        per[r["study"]].append(r)
    for sid, rs in per.items():
        d = [r["direction_right"] for r in rs if r["direction_right"] is not None]
        print(f"| {sid} | {sum(bool(r['within']) for r in rs)}/{len(rs)} | {f'{sum(d)}/{len(d)}' if d else '-'} |")
    print("\n| study | arm | quantity | day | stat | observed | simulated (95% CI) | within | direction |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in scored:  # score_study keeps every field of the result row, simulated_ci95 included
        sim = r["simulated"]
        lo_hi = r.get("simulated_ci95")
        sim_s = "-" if sim is None else f"{sim:.3g}" + (f" ({lo_hi[0]:.3g} to {lo_hi[1]:.3g})" if lo_hi else "")
        day = "-" if r["day"] is None else f"{r['day']:g}"
        dr = {None: "-", True: "yes", False: "NO"}[r["direction_right"]]
        print(
            f"| {r['study']} | {r['arm'][:36]} | {r['quantity']} | {day} | {r['stat']} | {r['observed']:.3g} | "
            f"{sim_s} | {'yes' if r['within'] else 'NO'} | {dr} |"
        )


if __name__ == "__main__":
    main(*sys.argv[1:])

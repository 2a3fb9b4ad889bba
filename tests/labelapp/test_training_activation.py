"""Safe activation: the frozen evaluation set (never trained on) and the rule that decides activation.

The models compared here are tiny BERTs saved to disk: one with random heads and its mirror image
(the reward negated), so one of them ranks the evaluation pairs strictly better than the other without
any training, and the test knows which.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from labelapp.models import (
    Comparison,
    EvalSetRating,
    Prompt,
    Rating,
    Response,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services import training
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, length_check_asked, rating_submit

from .test_training import _rate_many

pytest.importorskip("torch")


@pytest.fixture
def eval_settings(settings, tiny_backbone, tmp_path):
    settings.TRAINING = {
        **settings.TRAINING,
        "BACKBONE": tiny_backbone,
        "EVAL_SET_PERCENT": 100,
        "EVAL_SET_MIN_PAIRS": 4,
        "AUTO_ACTIVATE": True,
        "DEVICE": "cpu",
    }
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings


@pytest.fixture
def enqueued(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(training, "_enqueue", sent.append)
    return sent


def _acked_rater(make_user):
    from labelapp.services.guidelines import guideline_acknowledge, guideline_current

    rater = make_user()
    guideline_acknowledge(rater=rater, version=guideline_current())
    return rater


def _rate_on(prompt: Prompt, rater, good: str, bad: str) -> Rating:
    """One more rated comparison on an existing prompt (the good answer wins)."""
    a = Response.objects.create(prompt=prompt, text=good, source_model="t")
    b = Response.objects.create(prompt=prompt, text=bad, source_model="t")
    Comparison.objects.create(prompt=prompt, response_a=a, response_b=b, required_ratings=1)
    assignment = assignment_next(rater=rater)
    ra, rb = assignment.comparison.response_a, assignment.comparison.response_b
    preference = -2 if "dog" in ra.text else 2
    asked = length_check_asked(preference=preference, words_a=ra.word_count, words_b=rb.word_count)
    return rating_submit(
        rater=rater,
        assignment_id=assignment.pk,
        idempotency_key=assignment.form_key,
        data=RatingInput(preference=preference, length_check="adds_content" if asked else ""),
    )[0]


def _rate_on_again(prompt: Prompt, make_user, i: int) -> Rating:
    return _rate_on(prompt, _acked_rater(make_user), f"A dog barks, {i}.", f"A cat barks, {i}.")


@pytest.mark.parametrize(
    ("candidate", "active", "n_pairs", "ok", "words"),
    [
        # the incident in the issue: 42.9% on 7 pairs must not activate itself
        ({"balanced_accuracy": 0.429}, None, 7, False, "fewer than the 50"),
        ({"balanced_accuracy": 0.70}, None, 60, True, "Activated"),
        ({"balanced_accuracy": 0.70}, {"balanced_accuracy": 0.72}, 60, False, "below the active"),
        ({"balanced_accuracy": 0.72}, {"balanced_accuracy": 0.72}, 60, True, "at least the active"),
        ({"balanced_accuracy": None}, None, 60, False, "could not be measured"),
        ({"balanced_accuracy": 0.9}, {"balanced_accuracy": None}, 60, False, "active version"),
        # a collapsed model (every reward equal: every pair a tie) scores exactly one half; it must not
        # replace an active version that measured below one half, nor go live as the first version
        ({"balanced_accuracy": 0.5}, {"balanced_accuracy": 0.46}, 60, False, "no better than a coin"),
        ({"balanced_accuracy": 0.5}, None, 60, False, "no better than a coin"),
        ({"balanced_accuracy": 0.51}, {"balanced_accuracy": 0.46}, 60, True, "at least the active"),
        # balanced accuracy resting on three shorter-won pairs: one pair swings it 17 points
        (
            {"balanced_accuracy": 0.9, "n_longer_won": 57, "n_shorter_won": 3}, None, 60, False,
            "the longer answer won 57 and the shorter 3; balanced accuracy needs at least 10 of each",
        ),
        ({"balanced_accuracy": 0.9, "n_longer_won": 48, "n_shorter_won": 12}, None, 60, True, "Activated"),
    ],
)  # fmt: skip
def test_the_activation_rule(candidate, active, n_pairs, ok, words):
    decided, reason = training.activation_decision(
        candidate=candidate, active=active, n_pairs=n_pairs, min_pairs=50, min_group=10
    )
    assert decided is ok and words in reason


@pytest.mark.parametrize(
    ("active", "words"),
    [(None, "and none is active"), ({"balanced_accuracy": None}, "replaces the active version unmeasured")],
)
def test_without_a_required_set_the_note_says_whether_it_replaced_a_version(active, words):
    """It said "none is active" while it replaced the active version."""
    decided, reason = training.activation_decision(candidate=None, active=active, n_pairs=0, min_pairs=0)
    assert decided is True and words in reason


@pytest.mark.django_db
def test_evaluation_prompts_never_train_and_prompts_already_trained_never_join(
    eval_settings, guideline, make_user, enqueued
):
    eval_settings.TRAINING = {**eval_settings.TRAINING, "EVAL_SET_PERCENT": 0}
    trained = _rate_many(make_user, 5)
    run = training.training_run_request(trigger="manual", force=True)
    assert len(run.data_snapshot["rating_ids"]) == 5 and EvalSetRating.objects.count() == 0
    training.training_run_cancel(run=run)

    # From now on every new prompt is an evaluation prompt.
    eval_settings.TRAINING = {**eval_settings.TRAINING, "EVAL_SET_PERCENT": 100}
    fresh = _rate_many(make_user, 3)
    rater = fresh[0].rater
    old_prompt = trained[0].comparison.prompt
    _rate_on(old_prompt, rater, "A dog barks, yes.", "A cat barks, yes.")
    run2 = training.training_run_request(trigger="manual", force=True)
    in_set = set(EvalSetRating.objects.values_list("rating_id", flat=True))
    assert in_set == {r.pk for r in fresh}  # the old prompt's new rating was not taken: it was trained on
    assert not in_set & set(run2.data_snapshot["rating_ids"])
    assert run2.data_snapshot["n_eval_set"] == 3
    # the new rating of the already-trained prompt keeps training; evaluation prompts never do
    assert set(run2.data_snapshot["rating_ids"]) == {r.pk for r in trained} | {
        # the newest ordinary one: a repeat drawn (REPEAT_RATE) for an earlier rating may be newer
        old_prompt.comparisons.filter(kind=Comparison.Kind.NORMAL).order_by("-pk").first().ratings.get().pk
    }
    # a later rating of an evaluation prompt joins the set too (whole prompts)
    training.training_run_cancel(run=run2)
    _rate_on(fresh[0].comparison.prompt, rater, "A dog barks indeed.", "A cat barks indeed.")
    assert training.eval_set_grow() == 1 and EvalSetRating.objects.count() == 4


def _saved_models(tmp_path, tiny_backbone):
    """A random reward model and its mirror image (every reward negated)."""
    import torch
    from transformers import AutoTokenizer

    from rewardtrainer.model import RewardModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_backbone, objective="plain")
    model.max_length = 64
    paths = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            model.quality_head.weight.mul_(sign)
            model.quality_head.bias.mul_(sign)
        path = tmp_path / f"model{int(sign)}"
        model.save_pretrained(path, tokenizer=tokenizer)
        paths.append(str(path))
    return paths


def _version(number: int, path: str, *, active: bool = False) -> RewardModelVersion:
    """A version as a run leaves it: waiting for its decision (or, `active`, decided and in force)."""
    run = TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED, config={})
    pending = {
        "eval_set_metrics": training.decision_pending_marker(active=training.reward_model_active()),
        "activation_note": training.DECIDING_NOTE,
    }
    return RewardModelVersion.objects.create(
        number=number, run=run, artifact_path=path, is_active=active, **({} if active else pending)
    )


@pytest.mark.django_db
def test_a_version_worse_than_the_active_one_on_the_frozen_set_stays_inactive_and_says_why(
    eval_settings, guideline, make_user, tmp_path, tiny_backbone, client, staff
):
    rater = _acked_rater(make_user)
    for i in range(8):  # the longer answer wins every pair, so one model's ranking is its mirror's inverse
        prompt = Prompt.objects.create(text=f"Which animal barks? ({i})")
        _rate_on(prompt, rater, "A dog barks. Really, a dog.", "A cat barks.")
    assert training.eval_set_grow() == 8
    pairs = training.eval_set_pairs()
    from rewardtrainer.evaluate import evaluate_model_dir

    paths = _saved_models(tmp_path, tiny_backbone)
    scores = [evaluate_model_dir(p, pairs, device="cpu")["balanced_accuracy"] for p in paths]
    assert abs(scores[0] - scores[1]) > 0.2, scores
    better, worse = (paths[0], paths[1]) if scores[0] > scores[1] else (paths[1], paths[0])

    _version(1, better, active=True)
    candidate = _version(2, worse)
    assert training.reward_model_safe_activate(version=candidate) is False
    candidate.refresh_from_db()
    assert not candidate.is_active and "below the active version's" in candidate.activation_note
    assert candidate.eval_set_metrics["n_pairs"] == 8 and candidate.eval_set_metrics["active"]["number"] == 1
    client.force_login(staff)
    page = client.get(reverse("reward_model_version", args=[2])).content.decode()
    assert "below the active version" in page and 'id="eval-set"' in page

    # The better one activates itself over a worse active version.
    RewardModelVersion.objects.filter(number=1).update(is_active=False)
    RewardModelVersion.objects.filter(number=2).update(is_active=True)
    v3 = _version(3, better)
    assert training.reward_model_safe_activate(version=v3) is True
    assert RewardModelVersion.objects.get(is_active=True).number == 3

    # With automatic activation off, the note says what the rule would have done, not "Not activated:
    # ...; Activated: ..." (read as a contradiction)
    eval_settings.TRAINING = {**eval_settings.TRAINING, "AUTO_ACTIVATE": False}
    RewardModelVersion.objects.filter(number=3).update(is_active=False)
    RewardModelVersion.objects.filter(number=2).update(is_active=True)
    v4 = _version(4, better)
    assert training.reward_model_safe_activate(version=v4) is False
    v4.refresh_from_db()
    note = v4.activation_note
    assert (
        note.startswith("Not activated: automatic activation is off")
        and "would have activated it (balanced" in note
    )
    assert "Activated:" not in note


@pytest.mark.django_db
def test_too_small_an_evaluation_set_keeps_a_new_version_inactive(
    eval_settings, guideline, make_user, tmp_path, tiny_backbone
):
    _rate_many(make_user, 3)  # 3 evaluation pairs < EVAL_SET_MIN_PAIRS = 4
    version = _version(1, _saved_models(tmp_path, tiny_backbone)[0])
    assert training.reward_model_safe_activate(version=version) is False
    version.refresh_from_db()
    assert not version.is_active and "has 3 pairs, fewer than the 4" in version.activation_note


@pytest.mark.django_db
def test_activation_by_hand_is_recorded_on_both_versions_notes(client, staff):
    """A roll-back left the automatic "Activated: ..." on the version it replaced (now inactive), and
    the hand activation itself was recorded nowhere."""
    old = _version(1, "/nowhere")
    old.activation_note = "Not activated: balanced accuracy 48.0% on 60 frozen evaluation pairs."
    old.save()
    new = _version(2, "/nowhere", active=True)
    new.activation_note = "Activated: balanced accuracy 61.0% on 60 frozen evaluation pairs."
    new.save()
    client.force_login(staff)
    client.post(reverse("reward_model_activate", args=[1]))
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.is_active and not new.is_active
    assert old.activation_note.startswith("Activated by hand by staff, ")
    assert old.activation_note.splitlines()[1].startswith("Not activated: balanced accuracy 48.0%")
    assert (
        new.activation_note.startswith("Deactivated ")
        and "v1 was activated by hand by staff." in new.activation_note
    )
    page = client.get(reverse("reward_model_version", args=[2])).content.decode()
    assert "v1 was activated by hand by staff.<br>Activated: balanced accuracy 61.0%" in page
    # the automatic path says so on the version it replaces
    training.reward_model_activate(version=new)
    old.refresh_from_db()
    assert old.activation_note.splitlines()[0].endswith("v2 was activated automatically.")


@pytest.mark.django_db
def test_a_roll_back_made_while_a_new_version_is_evaluated_stands(
    eval_settings, guideline, make_user, tmp_path, tiny_backbone, staff, monkeypatch
):
    """The automatic decision read the active version, scored both (minutes), then activated the new
    one over whatever was active by then: a roll-back staff made meanwhile was undone, and the new
    version never measured against the version it replaced."""
    from rewardtrainer.evaluate import evaluate_model_dir

    rater = _acked_rater(make_user)
    for i in range(8):
        _rate_on(
            Prompt.objects.create(text=f"Which animal barks? ({i})"), rater, "A dog barks. Really.", "A cat."
        )
    training.eval_set_grow()
    paths = _saved_models(tmp_path, tiny_backbone)
    scores = [
        evaluate_model_dir(p, training.eval_set_pairs(), device="cpu")["balanced_accuracy"] for p in paths
    ]
    better, worse = (paths[0], paths[1]) if scores[0] > scores[1] else (paths[1], paths[0])
    v1 = _version(1, worse)
    _version(2, worse, active=True)
    candidate = _version(3, better)  # better than v2: it would activate
    real = training._eval_set_figures

    def staff_roll_back_meanwhile(model_dir, pairs, device):
        if not RewardModelVersion.objects.get(pk=v1.pk).is_active:
            training.reward_model_activate(version=v1, by=staff)
        return real(model_dir, pairs, device)

    monkeypatch.setattr(training, "_eval_set_figures", staff_roll_back_meanwhile)
    assert training.reward_model_safe_activate(version=candidate) is False
    candidate.refresh_from_db()
    assert RewardModelVersion.objects.get(is_active=True).number == 1
    assert "the active version changed while this one was evaluated (v1" in candidate.activation_note


@pytest.mark.django_db
def test_a_failed_activation_decision_is_recorded_on_the_version(
    eval_settings, guideline, make_user, monkeypatch
):
    """An error while scoring (a model that will not load, a lost connection) after the run had
    succeeded left the version with no decision and no reason, inactive for good."""
    _rate_many(make_user, 6)
    version = _version(1, "/nowhere")

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(training, "_eval_set_figures", broken)
    assert training.reward_model_decide(version=version) is False
    version.refresh_from_db()
    assert not version.is_active
    assert version.activation_note.startswith(
        "Not activated: the evaluation on the frozen set failed (RuntimeError"
    )


@pytest.mark.django_db
def test_a_model_whose_figures_are_not_finite_is_not_activated_and_says_why(
    eval_settings, guideline, make_user, monkeypatch
):
    # the decision read a NaN balanced accuracy as a number ("Activated: balanced accuracy nan%"); only
    # PostgreSQL's refusal of NaN in jsonb kept it inactive, with a note about a JSON syntax error
    import rewardtrainer.evaluate

    _rate_many(make_user, 6)
    version = _version(1, "/nowhere")
    nan = float("nan")
    monkeypatch.setattr(
        rewardtrainer.evaluate,
        "evaluate_model_dir",
        lambda *a, **k: {"balanced_accuracy": nan, "accuracy": nan, "plots": {"length": [1.0, nan]}},
    )
    assert training.reward_model_decide(version=version) is False
    version.refresh_from_db()
    assert not version.is_active
    assert version.activation_note == (
        "Not activated: its balanced accuracy on the evaluation set could not be measured."
    )
    assert version.eval_set_metrics["candidate"]["plots"]["length"] == [1.0, None]


@pytest.mark.django_db
def test_the_beat_does_not_retrain_on_the_data_of_a_run_that_failed_or_was_cancelled(
    make_user, guideline, settings
):
    """New ratings were counted from the newest version: a run that failed for good (a bad setting)
    or that staff cancelled was queued again by the next beat, on the same data, for ever."""
    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 0}  # none joins the evaluation set
    _rate_many(make_user, 6)
    assert training.training_new_ratings_count() == 6
    newest = training.Rating.objects.order_by("-pk").first().pk
    for status in ("failed", "cancelled"):
        TrainingRun.objects.all().delete()
        TrainingRun.objects.create(status=status, data_snapshot={"max_rating_id": newest})
        assert training.training_new_ratings_count() == 0


@pytest.mark.django_db
def test_a_prompt_that_joins_the_evaluation_set_after_a_snapshot_does_not_train(make_user, guideline):
    """The set grows while another request's snapshot may not have committed yet: a prompt could join
    it with its ratings already in a run's snapshot, train, and then judge later versions."""
    ratings = _rate_many(make_user, 4)
    ids = [r.pk for r in ratings]
    assert len(training.training_pairs(ids)) == 4
    joined = ratings[0]
    EvalSetRating.objects.create(rating=joined, prompt=joined.comparison.prompt)
    assert f"rating:{joined.pk}" not in {p.pair_id for p in training.training_pairs(ids)}


@pytest.mark.django_db
def test_the_page_of_a_version_waiting_for_its_decision_shows_it_while_another_is_active(client, staff):
    # the decision's marker holds the active version's pk under "active", which the page read as the
    # active version's figures: a 500 until the decision was sent again (an hour by default)
    _version(1, "/nowhere", active=True)
    _version(2, "/nowhere")
    client.force_login(staff)
    r = client.get(reverse("reward_model_version", args=[2]))
    assert r.status_code == 200 and "Deciding: " in r.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("scoring", ["ends", "fails"])
def test_a_hand_activation_of_the_version_being_scored_stands(
    eval_settings, guideline, make_user, staff, monkeypatch, scoring
):
    # the decision, which had read no hand activation, wrote its refusal over the version staff had
    # just activated: active, with a note saying "Not activated" and no line for the activation; its
    # error path did the same when the scoring then failed
    _rate_many(make_user, 6)
    _version(1, "/nowhere", active=True)
    candidate = _version(2, "/nowhere")

    def staff_activate_it_meanwhile(model_dir, pairs, device):
        training.reward_model_activate(version=RewardModelVersion.objects.get(pk=candidate.pk), by=staff)
        if scoring == "fails":
            raise RuntimeError("CUDA out of memory")
        return {"balanced_accuracy": 0.4, "accuracy": 0.4}

    monkeypatch.setattr(training, "_eval_set_figures", staff_activate_it_meanwhile)
    assert training.reward_model_decide(version=candidate) is False
    candidate.refresh_from_db()
    assert candidate.is_active and candidate.activation_note.startswith("Activated by hand by staff, ")
    assert "Not activated" not in candidate.activation_note and candidate.eval_set_metrics == {}


@pytest.mark.django_db
def test_two_hand_activations_at_once_keep_every_line_of_the_notes(staff):
    # the second activation prepended its line to the copy of the note it had read before waiting for
    # the lock, and lost the "Deactivated" line the first had written meanwhile
    v1 = _version(1, "/nowhere")
    v2 = _version(2, "/nowhere", active=True)
    stale_v2 = RewardModelVersion.objects.get(pk=v2.pk)  # read by the second request, before the first ran
    training.reward_model_activate(version=v1, by=staff)
    training.reward_model_activate(version=stale_v2, by=staff)
    v2.refresh_from_db()
    lines = v2.activation_note.splitlines()
    assert lines[0].startswith("Activated by hand by staff") and "v1 was activated by hand" in lines[1]


@pytest.mark.django_db
def test_only_ratings_that_would_train_count_towards_a_new_run(make_user, guideline, settings):
    """Ties, ratings of withheld prompts and excluded ratings were counted as new: the beat started a
    run with nothing new to learn."""
    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 0}
    _rate_many(make_user, 3, tie=True)
    assert training.training_new_ratings_count() == 0
    usable = _rate_many(make_user, 4)
    assert training.training_new_ratings_count() == 4
    Prompt.objects.filter(pk=usable[0].comparison.prompt_id).update(withheld=True)
    assert training.training_new_ratings_count() == 3


@pytest.mark.django_db
def test_activating_the_active_version_again_changes_nothing(client, staff):
    """A double click (or a retried request) re-stamped activated_at and pushed a line into the note
    each time; after six, the automatic decision's reason had dropped off the version page."""
    v1 = _version(1, "/nowhere", active=True)
    v1.activation_note = "Activated: balanced accuracy 65.0% on 40 frozen evaluation pairs."
    v1.save()
    before = RewardModelVersion.objects.get(pk=v1.pk)
    client.force_login(staff)
    for _ in range(6):
        r = client.post(reverse("reward_model_activate", args=[1]), follow=True)
        assert "already active; nothing changed" in r.content.decode()
    assert client.post("/api/reward-models/1/activate/").status_code == 409
    v1.refresh_from_db()
    assert (v1.activation_note, v1.activated_at) == (before.activation_note, before.activated_at)


def _question(text: str) -> str:
    return " ".join(text.casefold().split())


@pytest.mark.django_db
@pytest.mark.parametrize("retyped", [str, lambda t: "  " + t.upper().replace(" ", "\n  ") + "\n"])
def test_a_prompt_typed_twice_trains_or_evaluates_as_one(
    eval_settings, guideline, make_user, enqueued, retyped
):
    # The set was keyed by prompt id alone: of two prompts with the same text (staff can type a
    # question twice), one could join the frozen set while its twin trained every version. Then by the
    # dedup key, which tells case and spacing apart (the trainer's own split does not).
    eval_settings.TRAINING = {**eval_settings.TRAINING, "EVAL_SET_PERCENT": 50}
    rater = _acked_rater(make_user)
    texts = [f"Which animal barks, number {i}?" for i in range(12)]
    for text in texts:
        for twin, typed in (("first", text), ("second", retyped(text))):
            _rate_on(Prompt.objects.create(text=typed), rater, f"A dog barks ({twin}).", "A cat barks.")
    run = training.training_run_request(trigger="manual", force=True)
    evaluated = {_question(t) for t in EvalSetRating.objects.values_list("prompt__text", flat=True)}
    trained = {
        _question(t)
        for t in Prompt.objects.filter(comparisons__ratings__in=run.data_snapshot["rating_ids"]).values_list(
            "text", flat=True
        )
    }
    assert evaluated and trained and not evaluated & trained
    assert EvalSetRating.objects.count() == 2 * len(evaluated)  # both twins of each evaluated text

    # A twin typed after its text trained never joins the set (a version has seen the text).
    training.training_run_cancel(run=run)
    eval_settings.TRAINING = {**eval_settings.TRAINING, "EVAL_SET_PERCENT": 100}
    before = EvalSetRating.objects.count()
    _rate_on(Prompt.objects.create(text=sorted(trained)[0]), rater, "A dog barks (third).", "A cat barks.")
    assert training.eval_set_grow() == 0 and EvalSetRating.objects.count() == before


@pytest.mark.django_db
def test_a_text_in_the_set_stops_training_through_a_twin_that_trained_before(
    eval_settings, guideline, make_user, enqueued
):
    # Twins split by the old id rule (one evaluated, one trained): the text's new ratings all evaluate
    # and the trained twin's ratings stop training, so later versions never see the text.
    eval_settings.TRAINING = {**eval_settings.TRAINING, "EVAL_SET_PERCENT": 0}
    rater = _acked_rater(make_user)
    trained_twin = Prompt.objects.create(text="Which animal barks, really?")
    _rate_on(trained_twin, rater, "A dog barks (first).", "A cat barks.")
    others = [Prompt.objects.create(text=f"Which animal barks, case {i}?") for i in range(4)]
    for p in others:
        _rate_on(p, rater, "A dog barks.", "A cat barks.")
    run = training.training_run_request(trigger="manual", force=True)
    training.training_run_cancel(run=run)
    evaluated_twin = Prompt.objects.create(text="Which animal barks, really?")
    _rate_on(evaluated_twin, rater, "A dog barks (second).", "A cat barks.")
    EvalSetRating.objects.create(rating=evaluated_twin.comparisons.get().ratings.get(), prompt=evaluated_twin)

    _rate_on(trained_twin, rater, "A dog barks (third).", "A cat barks.")
    assert training.eval_set_grow() == 1
    assert EvalSetRating.objects.filter(prompt=trained_twin).count() == 1
    snapshot = training.training_snapshot()
    texts = set(
        Prompt.objects.filter(comparisons__ratings__in=snapshot["rating_ids"]).values_list("text", flat=True)
    )
    assert texts == {p.text for p in others}


@pytest.mark.django_db
def test_new_ratings_the_evaluation_set_takes_do_not_count_towards_a_run(make_user, guideline, settings):
    """Ratings of new evaluation prompts were counted as new: 50 of them alone queued a run whose
    growth moved them all into the set, with nothing new to train on."""
    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 100}
    _rate_many(make_user, 5)
    assert training.training_new_ratings_count() == 0
    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 0}
    assert training.training_new_ratings_count() == 5


def _snapshot_run(max_rating_id: int, rating_ids: list[int]) -> TrainingRun:
    return TrainingRun.objects.create(
        status="succeeded", data_snapshot={"max_rating_id": max_rating_id, "rating_ids": rating_ids}
    )


@pytest.mark.django_db
def test_a_rating_of_an_evaluation_prompt_left_behind_a_snapshot_joins_the_set(
    make_user, guideline, settings
):
    """Only ratings newer than every snapshot could join: one of a prompt in the set that committed
    after a snapshot newer than it (its id drawn before), or became usable only after (an exclusion
    taken back in review), neither trained nor joined, for good."""
    from labelapp.services.review import rating_review_add

    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 100}
    first = _rate_many(make_user, 1)[0]
    assert training.eval_set_grow() == 1
    prompt = first.comparison.prompt
    late, restored = (_rate_on_again(prompt, make_user, i) for i in range(2))
    EvalSetRating.objects.filter(rating__in=[late, restored]).delete()  # as if they had not committed
    staff = make_user("reviewer", staff=True)
    rating_review_add(rating=restored, decision="exclude", reason="looked broken", reviewer=staff)
    _snapshot_run(max(late.pk, restored.pk), rating_ids=[])  # a run's snapshot newer than both
    assert training.eval_set_grow() == 1  # the late one
    rating_review_add(rating=restored, decision="confirm", reason="it was fine", reviewer=staff)
    assert training.eval_set_grow() == 1  # the one back in
    assert set(EvalSetRating.objects.values_list("rating_id", flat=True)) == {first.pk, late.pk, restored.pk}


@pytest.mark.django_db
def test_a_rating_a_run_trained_on_never_joins_the_set(make_user, guideline, settings):
    """A twin's rating that trained before its text joined the set stays out of it."""
    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 100}
    first = _rate_many(make_user, 1)[0]
    trained = _rate_on_again(first.comparison.prompt, make_user, 0)
    _snapshot_run(trained.pk, rating_ids=[trained.pk])
    EvalSetRating.objects.create(rating=first, prompt=first.comparison.prompt)  # the text is in the set
    assert training.eval_set_grow() == 0
    assert not EvalSetRating.objects.filter(rating=trained).exists()


@pytest.mark.django_db
def test_a_snapshot_holds_every_trainable_rating_up_to_its_newest_id(
    make_user, guideline, settings, monkeypatch
):
    """The ids and the newest id were read in two statements: a rating committing in between was
    below the newest id without being in the ids (never counted as new; its text never evaluated)."""
    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 0}
    first = _rate_many(make_user, 2)[0]
    size = training.eval_set_size

    def a_rating_commits_meanwhile():
        _rate_on_again(first.comparison.prompt, make_user, 0)
        return size()

    monkeypatch.setattr(training, "eval_set_size", a_rating_commits_meanwhile)
    snapshot = training.training_snapshot()
    below = training._trainable_ratings().filter(pk__lte=snapshot["max_rating_id"])
    assert sorted(below.values_list("pk", flat=True)) == snapshot["rating_ids"]


@pytest.mark.django_db
def test_which_ratings_trained_is_read_from_the_runs_once(django_assert_num_queries):
    """A twin's ratings that trained came up at every growth and were tested against every run's id
    list each time (55 ms a rating with 200 runs of 100k ids, twice a beat)."""
    from django.core.cache import cache

    _snapshot_run(50, rating_ids=list(range(1, 51, 2)))
    _snapshot_run(90, rating_ids=[60, 70])
    first = TrainingRun.objects.order_by("pk").first()
    cache.delete(f"eval-set-trained:{first.pk}:{first.created_at.timestamp()}")
    few, many = [1, 2, 60, 95], list(range(1, 41))
    assert training._trained(few) == {1, 60}  # each id tested against the runs that could hold it
    assert training._trained(many) == set(range(1, 41, 2))  # the lists unpacked once
    # those that trained are remembered (the others join the set, and do not come up again)
    with django_assert_num_queries(1):  # the first run (the cache's key) and nothing else
        assert training._trained([*range(1, 41, 2), 60]) == {*range(1, 41, 2), 60}


@pytest.mark.django_db
def test_an_activation_that_fails_leaves_no_activated_note_on_an_inactive_version(
    eval_settings, guideline, make_user, monkeypatch
):
    # the note "Activated: ..." was written before the activation; a lock timeout in the activation
    # then left it on a version that was not active, and the error path (which only writes over a
    # version still "Deciding") said nothing
    from django.db import OperationalError

    _rate_many(make_user, 6)
    _version(1, "/nowhere", active=True)
    candidate = _version(2, "/nowhere")
    scores = iter([0.7, 0.4])  # the candidate, then the active version
    monkeypatch.setattr(
        training, "_eval_set_figures", lambda *a: {"balanced_accuracy": (b := next(scores)), "accuracy": b}
    )

    def lock_timeout(**kwargs):
        raise OperationalError("could not obtain lock on row (lock_timeout)")

    monkeypatch.setattr(training, "reward_model_activate", lock_timeout)
    assert training.reward_model_decide(version=candidate) is False
    candidate.refresh_from_db()
    assert not candidate.is_active and RewardModelVersion.objects.get(is_active=True).number == 1
    assert (
        candidate.activation_note.startswith("Not activated: ")
        and "OperationalError" in candidate.activation_note
    )
    assert "Activated: " not in candidate.activation_note


@pytest.mark.django_db
def test_a_decision_says_how_the_version_that_stands_in_its_way_was_activated(staff):
    # it said "changed by hand" of an automatic activation too
    auto = _version(1, "/nowhere", active=True)
    RewardModelVersion.objects.filter(pk=auto.pk).update(
        activation_note="Activated: balanced accuracy 70.0% ..."
    )
    assert training._active_now(RewardModelVersion.objects.get(pk=auto.pk)) == (
        "v1 is active now, activated automatically"
    )
    hand = _version(2, "/nowhere")
    training.reward_model_activate(version=hand, by=staff)
    assert training._active_now(RewardModelVersion.objects.get(pk=hand.pk)) == (
        "v2 is active now, activated by hand"
    )
    assert training._active_now(None) == "none is active now"


@pytest.mark.django_db(transaction=True)
def test_an_automatic_activation_and_a_hand_one_at_once_do_not_deadlock(staff, monkeypatch):
    # the decision's note UPDATE locked the candidate's row first, then the activation locked every row
    # in pk order; a hand activation holding the lower rows meanwhile waited for the candidate: deadlock
    import threading
    import time

    from django.db import connections

    active = _version(1, "/nowhere", active=True)
    other = _version(2, "/nowhere")
    candidate = _version(3, "/nowhere")
    monkeypatch.setattr(training, "eval_set_grow", lambda: None)
    monkeypatch.setattr(training, "eval_set_pairs", lambda: [])
    monkeypatch.setattr(training, "activation_decision", lambda **kw: (True, "Activated: test rule."))
    real = training.reward_model_activate

    def slow(**kwargs):
        time.sleep(1.0)  # the window between the note's UPDATE and the activation's row locks
        return real(**kwargs)

    monkeypatch.setattr(training, "reward_model_activate", slow)
    results = {}

    def decide():
        try:
            results["auto"] = training.reward_model_safe_activate(version=candidate)
        except Exception as exc:  # noqa: BLE001 (the deadlock is what the test looks for)
            results["auto"] = exc
        finally:
            connections.close_all()

    def by_hand():
        time.sleep(0.3)
        try:
            results["hand"] = real(version=RewardModelVersion.objects.get(pk=other.pk), by=staff)
        except Exception as exc:  # noqa: BLE001
            results["hand"] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide), threading.Thread(target=by_hand)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["auto"] is True and isinstance(results["hand"], RewardModelVersion), results
    assert RewardModelVersion.objects.filter(is_active=True).count() == 1
    assert not RewardModelVersion.objects.get(pk=active.pk).is_active

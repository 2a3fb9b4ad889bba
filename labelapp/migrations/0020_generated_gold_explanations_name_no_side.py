"""make_gold's explanations named answers "A" and "B" ("Answer B is answer A padded with filler...:
... so the concise answer A is better."), but raters see "left" and "right", and A is on the right for
about half of them: with gold feedback on, the explanation contradicted the side the page named. The
generated ones are rewritten as make_gold now writes them; explanations staff wrote are left alone."""

import re

from django.db import migrations

# make_gold's wording until this migration (labelapp/services/gold.py before it), frozen here
GENERATED = re.compile(
    r"Answer [AB] is answer [AB] padded with (?P<what>.+): it says nothing more, "
    r"so the concise answer [AB] is better\."
)
NOW = "The longer answer is the other one padded with {what}: it says nothing more, so the concise answer is better."


def forwards(apps, schema_editor):
    Comparison = apps.get_model("labelapp", "Comparison")
    rows = Comparison.objects.filter(kind="gold", gold_explanation__startswith="Answer ")
    for c in rows.only("pk", "gold_explanation").iterator():
        match = GENERATED.fullmatch(c.gold_explanation)
        if match:
            text = NOW.format(what=match.group("what"))
            Comparison.objects.filter(pk=c.pk).update(gold_explanation=text)


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0019_assignment_rater_newest")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

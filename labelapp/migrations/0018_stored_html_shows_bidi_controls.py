"""Stored prompt and answer HTML shows bidi control characters as markers, as the renderer now does on
its output too (labelapp/rendering.py, render_markdown): an entity such as `&#x202E;` in the Markdown
came out of the sanitizer as the raw character and reordered the text on screen. Applying the marker
pass to the stored HTML is what re-rendering would do for these characters; rows without one are not
touched."""

from django.db import migrations


def mark(apps, schema_editor):
    from labelapp.rendering import BIDI_CONTROLS, show_bidi_controls

    for name in ("Prompt", "Response"):
        model = apps.get_model("labelapp", name)
        rows = model.objects.filter(html__regex=f"[{''.join(BIDI_CONTROLS)}]").only("id", "html")
        batch = []
        for row in rows.iterator(chunk_size=1000):
            row.html = show_bidi_controls(row.html)
            batch.append(row)
            if len(batch) >= 1000:
                model.objects.bulk_update(batch, ["html"])
                batch = []
        if batch:
            model.objects.bulk_update(batch, ["html"])


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0017_exportfile_oldest_by_source")]

    operations = [migrations.RunPython(mark, migrations.RunPython.noop)]

"""Validators only (the admin's forms refuse control characters in one-line names, as ingest and the
token service do): no change to the database."""


import labelapp.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labelapp', '0030_prompt_erased_at'),
    ]

    operations = [
        migrations.AlterField(
            model_name='apitoken',
            name='name',
            field=models.CharField(help_text="What the token is for (e.g. 'playground ingest').", max_length=100, validators=[labelapp.models.one_line_name]),
        ),
        migrations.AlterField(
            model_name='prompt',
            name='category',
            field=models.CharField(blank=True, max_length=32, validators=[labelapp.models.one_line_name]),
        ),
        migrations.AlterField(
            model_name='prompt',
            name='external_id',
            field=models.CharField(blank=True, max_length=128, null=True, unique=True, validators=[labelapp.models.one_line_name]),
        ),
        migrations.AlterField(
            model_name='prompt',
            name='source',
            field=models.CharField(default='manual', help_text='Where the prompt came from.', max_length=64, validators=[labelapp.models.one_line_name]),
        ),
        migrations.AlterField(
            model_name='response',
            name='external_id',
            field=models.CharField(blank=True, max_length=128, null=True, unique=True, validators=[labelapp.models.one_line_name]),
        ),
        migrations.AlterField(
            model_name='response',
            name='source_model',
            field=models.CharField(max_length=128, validators=[labelapp.models.one_line_name]),
        ),
        migrations.AlterField(
            model_name='response',
            name='source_model_version',
            field=models.CharField(blank=True, max_length=64, validators=[labelapp.models.one_line_name]),
        ),
    ]

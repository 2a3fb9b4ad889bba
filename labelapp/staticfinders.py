"""A static-files finder that serves the plotly.min.js shipped inside Plotly's Python package.

Only that one file is exposed (as `plotly/plotly.min.js`), from the installed package: no copy in
git, no CDN. collectstatic picks it up like any other static file; whitenoise serves it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

STATIC_PATH = "plotly/plotly.min.js"


def _package_data() -> Path | None:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "package_data"
    return folder if (folder / "plotly.min.js").is_file() else None


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        folder = _package_data()
        self.storage = FileSystemStorage(location=str(folder)) if folder else None
        if self.storage is not None:
            self.storage.prefix = "plotly"

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if self.storage is None or path != STATIC_PATH:
            # [] also for one match: Django's own finders do, and its `find` takes None for a match
            # ([None]), which made every missing static file a 500 under DEBUG
            return []
        match = self.storage.path("plotly.min.js")
        return [match] if find_all else match

    def list(self, ignore_patterns):
        if self.storage is not None:
            yield "plotly.min.js", self.storage

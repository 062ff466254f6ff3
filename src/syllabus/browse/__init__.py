"""`syllabus browse`: a local page over datasets, runs and record files (issue 22).

source.py finds what a path holds and reads it a row group at a time; query.py filters and
searches with Arrow compute; funnel.py reads stats.json; labels.py keeps a person's labels;
app.py serves the page (static/: the page's only assets).
"""

from syllabus.browse.app import create_app, serve
from syllabus.browse.labels import latest_per_record
from syllabus.browse.source import open_target

__all__ = ["create_app", "latest_per_record", "open_target", "serve"]

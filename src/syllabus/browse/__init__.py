"""`syllabus browse`: a local page over datasets, runs and record files (issue 22).

source.py finds what a path holds and reads it a row group at a time; query.py filters and
searches with Arrow compute; funnel.py reads stats.json; labels.py keeps a person's labels
(a relabel appends; `curate/labels.py`'s `latest_per_record`, which `syllabus fit` applies too,
keeps the last); app.py serves the page (static/: the page's only assets).
"""

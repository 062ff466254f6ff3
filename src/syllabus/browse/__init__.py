"""`syllabus browse`: a local page over datasets, runs and record files (issue 22).

source.py finds what a path holds and reads it a row group at a time; query.py filters and
searches with Arrow compute; funnel.py reads stats.json; labels.py keeps a person's labels
(and `latest_per_record`, which `syllabus fit` applies to a labels file); app.py serves the
page (static/: the page's only assets). Nothing is imported here, so `fit` can read labels
without loading the web server.
"""

"""`python -m syllabus.train RECIPE`: see `launch.py`."""

from syllabus.train.launch import main

main()

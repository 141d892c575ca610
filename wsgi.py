"""What gunicorn serves: `gunicorn -w 2 -k gthread --threads 8 wsgi:app` (README)."""

import gc

from app import create_app

app = create_app()
# What is loaded by now lives as long as the process: out of the collector's sight, a full
# collection walks only what requests left behind. Without this each one walked ~235,000
# start-up objects and held its process for 115-165 ms under load (README, Performance).
gc.collect()  # not to keep start-up garbage for ever
gc.freeze()

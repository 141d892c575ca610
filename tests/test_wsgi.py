"""What gunicorn serves: the app, its start-up objects kept out of the garbage collector's walks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import gc, json
import wsgi
print(json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}))
"""


def test_the_served_app_leaves_its_start_up_objects_out_of_full_collections(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(LINLI_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'linli.db'}")
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # the modules, models, schemas and mappers: hundreds of thousands of objects, frozen...
    assert seen["frozen"] > 100_000, seen
    # ...so a full collection walks only what was made after (a request's leftovers)
    assert seen["tracked"] < seen["frozen"] / 20, seen

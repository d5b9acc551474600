"""`Storage.create_exclusive` for tests written before it landed on main (i13); once there,
the real one is used (the fallback below is defined only while `Storage` lacks it)."""

from __future__ import annotations

import os
import uuid

from flux_depth_assets.storage.store import Storage


class ExclusiveStorage(Storage):
    if not hasattr(Storage, "create_exclusive"):

        def create_exclusive(self, rel: str, data: bytes) -> bool:
            """Local only: temp file + `os.link`, which fails when the target exists."""
            full = self.full(rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            tmp = os.path.join(
                os.path.dirname(full), f".{os.path.basename(full)}.tmp-{uuid.uuid4().hex}"
            )
            with open(tmp, "wb") as fh:
                fh.write(data)
            try:
                os.link(tmp, full)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True

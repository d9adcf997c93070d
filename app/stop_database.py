"""`make stop-db`: stop the embedded PostgreSQL of instance/pgdata (python -m app.stop_database)."""
from __future__ import annotations

import os
from pathlib import Path

from .database import stop_embedded_server


def main() -> None:
    instance = Path(os.environ.get("TENANTATLAS_INSTANCE_PATH") or Path(__file__).resolve().parent.parent / "instance")
    pgdata = instance / "pgdata"
    if stop_embedded_server(pgdata):
        print(f"Stopped the embedded PostgreSQL in {pgdata}.")
    else:
        print(f"No embedded PostgreSQL is running in {pgdata}.")


if __name__ == "__main__":
    main()

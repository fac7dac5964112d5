"""Writes the bundled sample clickstream partitions (deterministic; re-run to regenerate)."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).parent / "data" / "clickstream"
DAYS = ["2026-11-19", "2026-11-20", "2026-11-21"]
COLUMNS = ["event_id", "session_id", "user_id", "email", "ip_address", "url", "consent", "event_time"]
CONSENTS = ["[0]", "[0,1]", "[0,1,2]", "[1,2]", "2", "", "no-consent"]


def main() -> None:
    rng = random.Random(42)
    users = [f"user-{i:04d}" for i in range(60)]
    for day in DAYS:
        start = datetime.fromisoformat(day)
        for part in range(2):
            path = HERE / f"dt={day}" / f"part-{part:04d}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="", encoding="utf-8") as fh:
                out = csv.writer(fh)
                out.writerow(COLUMNS)
                for i in range(150):
                    user = rng.choice(users)
                    session = f"s-{user[-4:]}-{day[-2:]}"
                    when = start + timedelta(seconds=rng.randrange(0, 86_400))
                    out.writerow(
                        [
                            f"{day}-{part}-{i:05d}",
                            session,
                            user,
                            f"{user}@example.com" if rng.random() > 0.1 else "",
                            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                            rng.choice(["/", "/cart", "/checkout", "/search?q=lamp, red", "/product/42"]),
                            rng.choice(CONSENTS),
                            when.strftime("%Y-%m-%dT%H:%M:%S"),
                        ]
                    )


if __name__ == "__main__":
    main()

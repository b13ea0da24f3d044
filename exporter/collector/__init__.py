"""The collector: each pool's jobs (refresh, sums, underperformers, index upkeep) and discovery, scheduled.

One module per job, each with a typed `run()`: `refresh`, `sums`, `underperformers`, `indexes`,
`discovery`; `scheduler` keeps the handle of every job it runs; `mongodb` is the verdict on
MongoDB (a cached ping); `clients` makes the shared client and each pool's MongoSessions;
`collector` holds them together (`Collector`).
"""

from exporter.collector.clients import CLOSE_WITHIN, MONGO_POOL, close_client, mongo_client, pool_sessions
from exporter.collector.collector import Collector
from exporter.collector.mongodb import MONGODB_CHECK_INTERVAL
from exporter.collector.scheduler import STOP_GRACE, PoolJob

__all__ = [
    "CLOSE_WITHIN",
    "MONGODB_CHECK_INTERVAL",
    "MONGO_POOL",
    "STOP_GRACE",
    "Collector",
    "PoolJob",
    "close_client",
    "mongo_client",
    "pool_sessions",
]

"""What every section shares: the run's settings, the results file, percentiles, the machine."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
UNAVAILABLE = "unavailable"


@dataclass
class Run:
    """One ``bench.run`` invocation: where results go and how big each section is."""

    results_path: Path
    quick: bool = False
    tiny: bool = False  # smoke tests: a handful of everything
    queries: int = 200  # timed HTTP queries per kind (after warm-up)
    warmup: int = 20
    index_n: int = 1_000_000  # synthetic vectors for the big index
    index_queries: int = 500  # queries for recall / QPS
    big_trees: list[int] = field(default_factory=lambda: [32])  # Annoy n_trees for the big synthetic index
    reindex_items: int = 0  # 0: the whole catalog
    throughput_seconds: float = 20.0
    throughput_requests: int = 400
    health_requests: int = 500  # per probe (/healthz, /readyz)
    web_workers: int = 0  # 0: min(2, cores)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for servers and commands

    def merge(self, figures: dict, section: str) -> None:
        """Replace this section's keys in the results file with ``figures`` and rewrite results.md."""
        from bench.report import write_markdown

        results = load_results(self.results_path)
        prefix = section + "."
        results = {k: v for k, v in results.items() if not k.startswith(prefix)}
        results.update({k: _plain(v) for k, v in figures.items()})
        results["machine." + "measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        results.update({"machine." + k: v for k, v in machine_info().items()})
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(sorted(results.items())), indent=1))
        os.replace(tmp, self.results_path)
        write_markdown(results, self.results_path.with_suffix(".md"))


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def load_results(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def say(key: str, value) -> None:
    """Print a figure as it comes."""
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"  {key:<48} {value}", flush=True)


def percentiles(values, prefix: str, out: dict, qs=(50, 95, 99)) -> None:
    """``prefix.pNN_ms`` for each percentile of ``values`` (milliseconds)."""
    values = np.asarray(list(values), dtype=np.float64)
    if not len(values):
        return
    for q in qs:
        out[f"{prefix}.p{q}_ms"] = float(np.percentile(values, q))


def machine_info() -> dict:
    import torch

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        import psutil

        memory_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        memory_gib = None
    info = {"cores": cores, "cpu_model": model, "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__, "memory_gib": memory_gib, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
            "load_average_1m": round(os.getloadavg()[0], 2)}
    return info


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()


def active_index_dir() -> Path | None:
    """The active index version's directory (from the database)."""
    setup_django()
    from webapp.models import IndexVersion

    version = IndexVersion.objects.filter(is_active=True).first()
    return Path(version.path) if version else None

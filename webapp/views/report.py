"""The model report (staff only): each checkpoint's training and metrics with its curves,
the GAN's sample grid, the latest evaluation, the confusion matrix, and a map of the
active index's embedding space.

Every picture is served by a view from a fixed set of names, never from a path the
browser sends. Curves are drawn once per checkpoint version and cached as PNGs under
``ARTIFACTS_DIR/reports/``.
"""

from __future__ import annotations

import json
import math
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from models.checkpoint import CheckpointError, load_checkpoint
from webapp.models import Item
from webapp.services import SearchUnavailable, active_store

MAP_SAMPLE = 2000
MAP_COLOURED_CATEGORIES = 12  # the most common categories get a colour each, the rest share grey
_lock = threading.Lock()
_summaries: dict[str, tuple[tuple[int, int], dict]] = {}  # path -> ((mtime_ns, size), summary)


def models_dir() -> Path:
    return Path(settings.ARTIFACTS_DIR) / "models"


def reports_dir() -> Path:
    return Path(settings.ARTIFACTS_DIR) / "reports"


def checkpoint_paths() -> dict[str, Path]:
    """Checkpoint files by name (file stem), the only names the curves view accepts."""
    return {p.stem: p for p in sorted(models_dir().glob("*.pt")) if p.is_file()}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def figure(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def duration(seconds) -> str:
    if not _number(seconds):
        return ""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


def summarise(path: Path) -> dict:
    """What the report shows of one checkpoint (the weights are not kept). Cached by mtime and size."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _summaries.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        payload = load_checkpoint(path)
    except CheckpointError as exc:
        summary = {"name": path.stem, "file": path.name, "error": str(exc)}
    else:
        train = payload.get("train") or {}
        profile = train.get("profile") or {}
        history = [row for row in train.get("history") or [] if isinstance(row, dict)]
        summary = {
            "name": path.stem,
            "file": path.name,
            "kind": payload.get("kind", ""),
            "version": payload.get("version", ""),
            "profile": profile.get("name", "") if isinstance(profile, dict) else str(profile),
            "device": train.get("device", ""),
            "duration": duration(train.get("seconds")),
            "epochs": len(history),
            "n_train": train.get("n_train"),
            "metrics": [(k, figure(v)) for k, v in (payload.get("metrics") or {}).items() if _number(v)],
            "config": [(k, v) for k, v in (payload.get("config") or {}).items()
                       if _number(v) or isinstance(v, str) or (isinstance(v, list | tuple) and len(v) <= 8)],
            "history": history,
        }
    with _lock:
        _summaries[str(path)] = (stamp, summary)
    return summary


def curve_series(history: list[dict]) -> tuple[dict[str, list], dict[str, list]]:
    """Per-epoch series split into losses and other metrics (epoch and wall time left out)."""
    keys = [k for k in history[0] if k not in ("epoch", "seconds")] if history else []
    series = {k: [row.get(k) if _number(row.get(k)) else np.nan for row in history] for k in keys}
    series = {k: v for k, v in series.items() if not all(isinstance(x, float) and math.isnan(x) for x in v)}
    losses = {k: v for k, v in series.items() if "loss" in k}
    return losses, {k: v for k, v in series.items() if k not in losses}


def render_curves(summary: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = summary["history"]
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    panels = [(title, s) for title, s in zip(("losses", "metrics"), curve_series(history), strict=True) if s]
    fig = Figure(figsize=(5.2 * max(1, len(panels)), 3.0), dpi=100, layout="constrained")
    for n, (title, series) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), n)
        for name, values in series.items():
            ax.plot(epochs, values, label=name, linewidth=1.6)
        ax.set_title(f"{summary['kind']} {title}", fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        # beside the plot, not on it: the classifier's six accuracies leave no empty corner inside
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(target)


def curves_file(summary: dict) -> Path:
    safe = re.sub(r"[^\w.-]", "_", f"curves-{summary['name']}-{summary['version']}-legend-beside")
    return reports_dir() / f"{safe}.png"


def gan_samples_path() -> Path | None:
    def epoch_of(p: Path) -> int:
        digits = re.findall(r"\d+", p.stem)
        return int(digits[-1]) if digits else -1

    grids = sorted((models_dir() / "sketch2image-samples").glob("epoch-*.png"), key=epoch_of)
    if grids:
        return grids[-1]
    fallback = reports_dir() / "gan-samples-last.png"
    return fallback if fallback.is_file() else None


def confusion_path() -> Path | None:
    path = reports_dir() / "confusion.png"
    return path if path.is_file() else None


def human_sheet_path() -> Path | None:
    path = reports_dir() / "human-sketches.png"
    return path if path.is_file() else None


REPORT_IMAGES = {"gan-samples": gan_samples_path, "confusion": confusion_path, "human-sketches": human_sheet_path}


def flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    """Nested evaluation figures as (dotted name, value) rows."""
    if isinstance(value, dict):
        rows = []
        for key, inner in value.items():
            rows += flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, list):
        return [(prefix, f"{len(value)} entries")]
    return [(prefix, value)]


# The figures a reader looks for first, in words; every figure is in the full tables below them.
HEADLINE = [
    ("photo.p_at_5", "Photo search: items of the same kind among the top 5"),
    ("sketch.direct.p_at_5", "Sketch search (sketches drawn from test photos): same kind among the top 5"),
    ("sketch.gan.p_at_5", "The same sketches through the GAN road"),
    ("human.macro_p_at_5", "Sketches drawn by people: right kind among the top 5 (mean over the kinds)"),
    ("human.macro_p_at_5_kinds_not_trained_on", "The same, over the kinds no training drawing shows"),
    ("text.p_at_5", "Search by words (test titles): same kind among the top 5"),
    ("text.r_at_10", "Search by words: the title's own item among the top 10"),
    ("classifier.image_only.with_neighbours.accuracy", "Category of an upload without a title"),
    ("classifier.fused.accuracy", "Category of an upload with its title"),
    ("ann.recall_at_10", "The index finds what an exact search finds (recall@10)"),
]


def headline(data: dict) -> list[tuple[str, float]]:
    """(what it measures, value in [0, 1]) of the ``HEADLINE`` figures the evaluation has."""
    out = []
    for path, label in HEADLINE:
        value = data
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if _number(value) and 0 <= value <= 1:
            out.append((label, float(value)))
    return out


def evaluation() -> dict | None:
    path = reports_dir() / "evaluate.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"error": f"{path.name} cannot be read: {exc}"}
    if not isinstance(data, dict):
        return {"error": f"{path.name} does not hold a JSON object"}
    sections = []
    for section, value in data.items():
        rows = flatten(value) if isinstance(value, dict) else [("", value)]
        sections.append({"name": section, "rows": [(name, figure(value)) for name, value in rows]})
    human = data.get("human") if isinstance(data.get("human"), dict) else {}
    kinds = [{"name": name, "p_at_5": g.get("p_at_5"), "n": g.get("n"), "instead": ", ".join(g.get("found_instead", []))}
             for name, g in (human.get("groups") or {}).items() if isinstance(g, dict) and _number(g.get("p_at_5"))]
    return {"sections": sections, "headline": headline(data), "human_kinds": kinds,
            "modified": datetime.fromtimestamp(path.stat().st_mtime, tz=UTC), **evaluation_scope(data)}


def evaluation_scope(data: dict) -> dict:
    """What an evaluation measured: ``n`` test items (``sample``: a ``--limit`` sample, as the demo's), of which
    index, in how many seconds."""
    photo, index = data.get("photo"), data.get("index")
    limit = re.search(r"--limit (\d+)", str(data.get("command", "")))
    return {"n": photo.get("n") if isinstance(photo, dict) else None, "sample": bool(limit),
            "index_version": index.get("version", "") if isinstance(index, dict) else "",
            "seconds": duration(data.get("seconds"))}


@staff_member_required
@require_GET
def model_report(request):
    checkpoints = [summarise(p) for p in checkpoint_paths().values()]
    try:
        version, _store, _item_of = active_store()
        index, index_error = version, ""
    except SearchUnavailable as exc:
        index, index_error = None, str(exc)
    scores = evaluation()
    context = {
        "evaluation_is_stale": bool(scores and index and scores.get("index_version")
                                    and scores["index_version"] != index.name),
        "checkpoints": checkpoints,
        "models_dir": models_dir(),
        "gan_samples": gan_samples_path() is not None,
        "confusion": confusion_path() is not None,
        "human_sheet": human_sheet_path() is not None,
        "evaluation": scores,
        "index": index,
        "index_error": index_error,
    }
    return render(request, "webapp/report.html", context)


@staff_member_required
@require_GET
def report_curves(request, name: str):
    path = checkpoint_paths().get(name)
    if path is None:
        raise Http404("no such checkpoint")
    summary = summarise(path)
    if not summary.get("history"):
        raise Http404("this checkpoint has no training history")
    target = curves_file(summary)
    if not target.is_file():
        render_curves(summary, target)
    return FileResponse(open(target, "rb"), content_type="image/png")


@staff_member_required
@require_GET
def report_image(request, name: str):
    find = REPORT_IMAGES.get(name)
    path = find() if find else None
    if path is None:
        raise Http404("no such report image")
    return FileResponse(open(path, "rb"), content_type="image/png")


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """t-SNE to two dimensions (as the seed paper's Fig. 2; PCA-initialised, fixed seed), scaled to [0, 1]."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(vectors) - 1) / 3)))
    points = TSNE(n_components=2, init="pca", perplexity=perplexity, metric="cosine",
                  random_state=0).fit_transform(vectors)
    low, high = points.min(axis=0), points.max(axis=0)
    return (points - low) / np.where(high - low > 0, high - low, 1.0)


@staff_member_required
@require_GET
def report_embedding(request):
    """A t-SNE map of a sample of the active index's image vectors: [x, y, catalog id, category, title] points.
    Computed once per index version (some seconds) and cached under ARTIFACTS_DIR/reports."""
    try:
        version, store, item_of = active_store()
    except SearchUnavailable as exc:
        return JsonResponse({"error": str(exc)}, status=503)
    cached = reports_dir() / f"embedding-{version.name}-sku.json"  # points name items by catalog id
    if cached.is_file():
        return HttpResponse(cached.read_bytes(), content_type="application/json")
    known = np.flatnonzero(item_of >= 0)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(known, size=min(MAP_SAMPLE, len(known)), replace=False))
    items = Item.objects.in_bulk([int(item_of[i]) for i in sample])
    sample = np.array([i for i in sample if int(item_of[i]) in items], dtype=np.int64)
    if len(sample) < 3:
        return JsonResponse({"error": "too few indexed items to draw a map"}, status=503)
    xy = project_2d(np.asarray(store.vectors("image")[sample], dtype=np.float64))
    counts: dict[str, int] = {}
    for i in sample:
        counts[items[int(item_of[i])].category] = counts.get(items[int(item_of[i])].category, 0) + 1
    categories = sorted(counts, key=lambda c: (-counts[c], c))
    index_of = {c: n for n, c in enumerate(categories)}
    points = []
    for (x, y), i in zip(xy, sample, strict=True):
        item = items[int(item_of[i])]
        points.append([round(float(x), 4), round(float(y), 4), item.sku, index_of[item.category], item.title])
    body = {"version": version.name, "indexed": int(store.count), "method": "t-SNE",
            "categories": [{"name": c, "count": counts[c]} for c in categories],
            "coloured": MAP_COLOURED_CATEGORIES, "points": points}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(body))
    return JsonResponse(body)

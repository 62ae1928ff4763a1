"""``bench/results.md``: the whole results file as markdown tables (the README links or includes it)."""

from __future__ import annotations

import re
from pathlib import Path

STAGES = ("decode", "normalise", "gan", "encoder", "text_encoder", "queue", "live", "ann", "database", "serialise",
          "total")


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines + [""]


def machine(r: dict) -> list[str]:
    return [f"Measured {r.get('machine.measured_at', '?')} on **{r.get('machine.cores', '?')} cores** "
            f"({r.get('machine.cpu_model', '?')}), {r.get('machine.memory_gib', '?')} GiB, torch "
            f"{r.get('machine.torch_version', '?')} with {r.get('machine.torch_threads', '?')} threads, CUDA: "
            f"{r.get('machine.cuda', 'none')}; 1-minute load average at the last section: "
            f"{r.get('machine.load_average_1m', '?')} (figures taken on a busy machine are noisy).", ""]


def query_tables(r: dict) -> list[str]:
    out = []
    for base, title in (("query", "embedded defaults"), ("query.redis", "through Redis and an inference worker")):
        kinds = sorted({k[len(base) + 1:].split(".")[0] for k in r if k.startswith(base + ".") and k.endswith(".status")
                        and k.count(".") == base.count(".") + 2})
        if not kinds:
            continue
        out += [f"### Query latency over HTTP, {title} ({r.get(base + '.server', '')})", "",
                "End to end at the client, ms; stage columns are the server's own p50 `timings_ms`.", ""]
        order = ["photo", "sketch", "sketch_gan", "text", "combined"]
        kinds.sort(key=lambda k: (order.index(k) if k in order else len(order), k))
        rows = []
        for kind in kinds:
            p = f"{base}.{kind}"
            if r.get(p + ".status") != "ok":
                rows.append([kind, r.get(p + ".status")] + [None] * (3 + len(STAGES)))
                continue
            rows.append([kind, r.get(p + ".n"), r.get(p + ".p50_ms"), r.get(p + ".p95_ms"), r.get(p + ".p99_ms")]
                        + [r.get(f"{p}.stage.{s}.p50_ms") for s in STAGES])
        out += table(["kind", "n", "p50", "p95", "p99"] + [f"{s} p50" for s in STAGES], rows)
        notes = sorted({v for k, v in r.items() if k.startswith(base + ".") and k.endswith(".note")})
        out += [f"Note: {n}" for n in notes] + ([""] if notes else [])
    return out


def throughput_tables(r: dict) -> list[str]:
    out = []
    for base in ("throughput", "throughput.redis"):
        clients = sorted({int(m.group(1)) for k in r if (m := re.fullmatch(re.escape(base) + r"\.c(\d+)\.qps", k))})
        if not clients:
            continue
        out += [f"### Throughput, {r.get(base + '.kind', '')} queries ({r.get(base + '.server', '')}"
                f"{', Redis + worker' if base.endswith('redis') else ''})", "",
                "Clients run on the same machine as the server (they share its cores).", ""]
        out += table(["clients", "queries/s", "p50 ms", "p99 ms", "errors"],
                     [[c, r.get(f"{base}.c{c}.qps"), r.get(f"{base}.c{c}.p50_ms"), r.get(f"{base}.c{c}.p99_ms"),
                       r.get(f"{base}.c{c}.errors")] for c in clients])
    return out


def embed_tables(r: dict) -> list[str]:
    rows = []
    for k in sorted(r):
        m = re.fullmatch(r"embed\.(\w+)\.(\w+)\.b(\d+)\.images_per_s", k)
        if m:
            rows.append([m.group(1), m.group(2), int(m.group(3)), r[k]])
    notes = [f"- {k.split('.', 1)[1]}: {v}" for k, v in sorted(r.items()) if k.startswith("embed.") and
             k.endswith(".status")]
    if not rows and not notes:
        return []
    rows.sort(key=lambda x: (x[0], x[1], x[2]))
    return ["### Embedding throughput", ""] + table(["model", "device", "batch", "images/s"], rows) + notes + [""]


def index_tables(r: dict) -> list[str]:
    out = []
    for ds in sorted({k.split(".")[1] for k in r if k.startswith("index.") and k.endswith(".n")
                      and k.count(".") == 2}, key=lambda d: (r.get(f"index.{d}.n", 0), d)):
        p = f"index.{ds}"
        out += [f"### Index: {ds} ({fmt(r.get(p + '.n'))} × {r.get(p + '.dim')}-d, {r.get(p + '.source', '')})", ""]
        out += [f"Exact search (numpy/BLAS): {fmt(r.get(p + '.exact.qps'))} queries/s one at a time, "
                f"{fmt(r.get(p + '.exact.batch_qps'))} queries/s in batches. Chosen setting of our store: "
                f"{r.get(p + '.chosen', '?')} → recall@10 {fmt(r.get(p + '.recall_at_10'))}, "
                f"{fmt(r.get(p + '.qps'))} queries/s, {fmt(r.get(p + '.speedup_vs_exact'))}× exact.", ""]
        rows = []
        for k in sorted(r):
            m = re.fullmatch(re.escape(p) + r"\.sweep\.(\w+)\.([\w-]+)\.recall_at_10", k)
            if m:
                s = f"{p}.sweep.{m.group(1)}.{m.group(2)}"
                build = f"{p}.{m.group(1)}.{m.group(2).split('-')[0]}"
                rows.append([m.group(1), m.group(2), r.get(build + ".build_s"), r.get(build + ".size_mb"), r[k],
                             r.get(s + ".qps"), r.get(s + ".speedup_vs_exact")])
        rows.sort(key=lambda row: (row[0], [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", row[1])]))
        out += table(["library", "parameters", "build s", "size MB", "recall@10", "queries/s", "× exact"], rows)
        shared = sorted({k[len(p) + 1:k.index(".sharing.")] for k in r if k.startswith(p + ".") and ".sharing." in k})
        if shared:
            out += ["Two processes serving one index version (memory-mapped; every list or tree node read), MiB each: "
                    + "; ".join(f"{s.replace('.', ' ')}: RSS {fmt(r.get(f'{p}.{s}.sharing.rss_mb'))}, private "
                                f"{fmt(r.get(f'{p}.{s}.sharing.private_mb'))}, PSS {fmt(r.get(f'{p}.{s}.sharing.pss_mb'))}"
                                for s in shared) + ".", ""]
        for note in ("synthetic", "note"):
            if r.get(f"{p}.{note}"):
                out += [str(r[f"{p}.{note}"]), ""]
    return (["### Index"] + [""] + out) if out else []


def load_tables(r: dict) -> list[str]:
    if "load.requests" not in r:
        return []
    out = [f"### Load test on loopback ({r.get('load.server', '')})", "",
           f"{r.get('load.clients')} concurrent clients for {fmt(r.get('load.seconds'))} s of mixed queries "
           f"({r.get('load.mix', '')}); clients share the server's cores. Latency in ms at the client.", ""]
    out += table(["requests", "errors", "503s", "429s", "queries/s", "p50", "p95", "p99"],
                 [[r.get("load.requests"), r.get("load.errors"), r.get("load.errors_503"),
                   r.get("load.rate_limited_429"), r.get("load.qps"), r.get("load.p50_ms"), r.get("load.p95_ms"),
                   r.get("load.p99_ms")]])
    notes = [f"- {k.split('.')[1]}: {v}" for k, v in sorted(r.items()) if k.startswith("load.")
             and k.endswith(".status") and k.count(".") == 2]
    out += notes + ([""] if notes else [])
    series, at = r.get("load.memory.rss_mb_series"), r.get("load.memory.rss_mb_at")
    if series and at:
        out += [f"Server RSS (gunicorn master + workers, MiB) over {fmt(r.get('load.memory.queries'))} queries from "
                f"{r.get('load.memory.clients')} clients ({fmt(r.get('load.memory.qps'))} queries/s, "
                f"{r.get('load.memory.errors')} errors):", ""]
        out += table(["after query"] + [str(a) for a in at], [["RSS MiB"] + list(series)])
        if "load.memory.growth_pct" in r:
            out += [f"Growth from query {r.get('load.memory.growth_from')} to {r.get('load.memory.growth_to')}: "
                    f"{fmt(r.get('load.memory.growth_mb'))} MiB ({fmt(r.get('load.memory.growth_pct'))} %): "
                    f"**{r.get('load.memory.verdict')}** (flat: under 5 %).", ""]
        elif r.get("load.memory.status"):
            out += [str(r["load.memory.status"]), ""]
    return out


def key_values(r: dict, section: str, title: str) -> list[str]:
    rows = [[k[len(section) + 1:], v] for k, v in sorted(r.items()) if k.startswith(section + ".")
            and not k.endswith("markdown")]
    return ([f"### {title}", ""] + table(["figure", "value"], rows)) if rows else []


def health_tables(r: dict) -> list[str]:
    rows = []
    for base, shape in (("health", "embedded defaults"), ("health.redis", "Redis + inference worker")):
        for probe, what in (("healthz", "liveness"), ("readyz", "readiness")):
            p = f"{base}.{probe}"
            if p + ".status" in r:
                rows.append([f"/{probe} ({what})", shape, r.get(p + ".status"), r.get(p + ".n"), r.get(p + ".p50_ms"),
                             r.get(p + ".p95_ms"), r.get(p + ".p99_ms")])
    if not rows:
        return []
    return (["### Health probes over HTTP (ms at the client, one keep-alive connection)", ""]
            + table(["probe", "deployment", "status", "n", "p50", "p95", "p99"], rows))


def write_markdown(results: dict, path: Path) -> None:
    lines = ["# Benchmarks", "", "Written by `make bench` (`python -m bench.run`) from `bench/results.json`.", ""]
    lines += machine(results)
    lines += query_tables(results) + throughput_tables(results) + embed_tables(results) + index_tables(results)
    lines += load_tables(results) + health_tables(results)
    lines += key_values(results, "reindex", "Reindex (the full catalog)")
    lines += key_values(results, "memory", "Memory (MiB; PSS shares each shared page out among the processes "
                                           "mapping it)")
    lines += key_values(results, "training", "Training cost (from the checkpoints)")
    if results.get("scale.markdown"):
        lines += [results["scale.markdown"], ""]
    Path(path).write_text("\n".join(lines))

#!/usr/bin/env python3
"""Report for bench/uploads/run.sh: joins the run's metadata and per-target records into one
JSON file and writes the markdown table.

    python3 report.py META_JSON PHASES_JSONL OUT_JSON OUT_MD
"""

import json
import sys

MIB = 1024 * 1024
GIB = 1024 * MIB


def mib(kib):
    return None if kib is None else kib / 1024


def fmt(value, digits=1):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def main():
    meta_path, phases_path, out_json, out_md = sys.argv[1:5]
    meta = json.load(open(meta_path))
    rows = [json.loads(line) for line in open(phases_path) if line.strip()]

    direct = next((r for r in rows if r["target"] == "direct"), None)
    direct_mibs = direct["load"]["bytes"] / MIB / direct["load"]["wall_s"] if direct else None
    for r in rows:
        load = r["load"]
        r["mib_per_s"] = load["bytes"] / MIB / load["wall_s"]
        r["ratio_to_direct"] = r["mib_per_s"] / direct_mibs if direct_mibs else None
        gib = load["bytes"] / GIB
        r["proxy_cpu_s"] = None if r["proxy_ticks"] is None else r["proxy_ticks"] / r["clk_tck"]
        r["proxy_cpu_s_per_gib"] = None if r["proxy_cpu_s"] is None else r["proxy_cpu_s"] / gib
        r["upstream_cpu_s_per_gib"] = r["upstream_ticks"] / r["clk_tck"] / gib
        samples = load.pop("rss_samples_kib")
        r["rss_during_load_max_kib"] = max(samples) if samples and r["pids"] else None
        r["rss_during_load_samples"] = len(samples)
        r["warmup"].pop("rss_samples_kib", None)

    json.dump({"meta": meta, "targets": rows}, open(out_json, "w"), indent=2)

    k = meta["knobs"]
    in_flight = k["CLIENTS"] * k["UPLOAD_MIB"]
    lines = [
        f"{meta['date_utc']}, commit `{meta['payguard_commit']}`, "
        f"{k['CLIENTS']} clients x {k['UPLOADS']} uploads of {k['UPLOAD_MIB']} MiB "
        f"(+1 warm-up upload each), up to {in_flight} MiB in flight",
        "",
        "| target | uploads (200) | GiB | wall s | MiB/s | ratio to direct | RSS before MiB "
        "| peak RSS (VmHWM) MiB | max RSS during load MiB | proxy CPU s / GiB "
        "| upstream CPU s / GiB | upload s p50 / max | statuses | others' CPU % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        load = r["load"]
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(load["statuses"].items()))
        warm = r["warmup"]["statuses"]
        if warm != {"200": r["warmup"]["uploads"]}:
            statuses += f" (warm-up: {warm})"
        lines.append(
            f"| {r['target']} | {load['uploads_ok']}/{load['uploads']} "
            f"| {load['bytes'] / GIB:.2f} | {load['wall_s']:.2f} | {fmt(r['mib_per_s'], 0)} "
            f"| {fmt(r['ratio_to_direct'], 3)} | {fmt(mib(r['rss_before_kib']))} "
            f"| {fmt(mib(r['vmhwm_kib']))} | {fmt(mib(r['rss_during_load_max_kib']))} "
            f"| {fmt(r['proxy_cpu_s_per_gib'], 3)} | {fmt(r['upstream_cpu_s_per_gib'], 3)} "
            f"| {load['upload_s_p50']:.2f} / {load['upload_s_max']:.2f} | {statuses} "
            f"| {r['foreign_core_pct']:.1f} |"
        )
    lines.append("")
    notes = []
    for r in rows:
        if r["streamed_uploads_total"] is not None:
            notes.append(f"{r['target']}: payguard_streamed_uploads_total = "
                         f"{r['streamed_uploads_total']}")
    ups = ", ".join(f"{r['target']} {mib(r['upstream_vmhwm_kib']):.0f}" for r in rows)
    notes.append(f"bench-upstream VmHWM after each target, MiB: {ups}")
    notes.append(f"quiet wait {meta['quiet_waited_s']} s, repeats {meta['repeats']}")
    lines += [f"- {n}" for n in notes]
    open(out_md, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

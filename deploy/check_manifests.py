#!/usr/bin/env python3
"""The checks deploy/check.sh runs in Python: what kubernetes-validate's schemas cannot see.

Subcommands (each exits 0 when clean, 1 listing every problem it found):

  split RENDERED OUTDIR       split `kustomize build` output into OUTDIR/core.yaml (kinds in
                              the Kubernetes schema) and OUTDIR/custom.yaml (custom resources),
                              and extract the ConfigMap's config.toml to OUTDIR/config.toml
  kustomization DIR           DIR/kustomization.yaml is well formed and names files that exist
  podmonitor FILE...          PodMonitors (a CRD, absent from kubernetes-validate) are well
                              formed and select a pod that has the port they scrape
  sidecar --config TOML FILE...
                              the pod with payguard agrees with payguard's config: native
                              sidecar, probe paths and ports, the proxy URL the app uses, the
                              mounts for the config and the store, the secrets the config
                              names coming from Secrets, an admin token, no plaintext
                              journal, security, grace period
  placeholders TOML           writes placeholder files beside TOML for the secret files it
                              names by relative path (admin token, journal key, webhook
                              secret), so `payguard check` can run where no Secret is mounted
  dockerfile DOCKERFILE DOCKERIGNORE --config TOML
                              the image's user, entrypoint, ports and volumes agree with the
                              config, and .dockerignore keeps every file the build copies

Needs PyYAML; Python 3.11+ for tomllib.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
import tomllib
from urllib.parse import urlsplit

import yaml

PAYGUARD_UID = 65532
PROXY_DEFAULT = "127.0.0.1:8080"
ADMIN_DEFAULT = "0.0.0.0:9090"
STORE_DEFAULT = "data/idempotency.redb"


class Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def check(self, ok: bool, where: str, what: str) -> None:
        if not ok:
            self.add(where, what)

    def finish(self, ok_message: str) -> int:
        if self.items:
            for item in self.items:
                print(f"problem: {item}")
            return 1
        print(ok_message)
        return 0


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict):
            raise SystemExit(f"{path}: a YAML document is not a mapping")
    return docs


def load_all(paths: list[str]) -> list[dict]:
    return [d for p in paths for d in load_docs(p)]


def describe(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def is_core(api_version: str) -> bool:
    """Whether a kind's API group is Kubernetes' own (in kubernetes-validate's schemas)."""
    if "/" not in api_version:
        return True  # the core group: "v1"
    group = api_version.split("/", 1)[0]
    return "." not in group or group.endswith(".k8s.io")


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", text)
    if not parts:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def split_host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def load_config(path: str) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def secret_files(cfg: dict) -> dict[str, str]:
    """The files holding secrets that a config names, by their dotted key."""
    resolver = cfg.get("resolver", {})
    files = {
        "admin.token_file": cfg.get("admin", {}).get("token_file"),
        "resolver.encryption_key_file": resolver.get("encryption_key_file"),
        "resolver.webhook.secret_file": resolver.get("webhook", {}).get("secret_file"),
    }
    return {k: v for k, v in files.items() if v}


def secret_envs(cfg: dict) -> dict[str, str]:
    """The environment variables holding secrets that a config names, by their dotted key."""
    envs = {
        "admin.token_env": cfg.get("admin", {}).get("token_env"),
        "redis.password_env": cfg.get("redis", {}).get("password_env"),
    }
    return {k: v for k, v in envs.items() if v}


def config_facts(path: str) -> dict:
    cfg = load_config(path)
    listen = cfg.get("listen", {})
    idem = cfg.get("idempotency", {})
    server = cfg.get("server", {})
    store_path = idem.get("path", STORE_DEFAULT)
    return {
        "proxy": split_host_port(listen.get("proxy", PROXY_DEFAULT)),
        "admin": split_host_port(listen.get("admin", ADMIN_DEFAULT)),
        "store": idem.get("store", "embedded"),
        "store_path": store_path,
        "drain": parse_duration(server.get("drain_timeout", "30s")),
        "secret_files": secret_files(cfg),
        "secret_envs": secret_envs(cfg),
        "plaintext_journal": cfg.get("resolver", {}).get("allow_plaintext_journal", False),
    }


# --- split --------------------------------------------------------------------------------


def cmd_split(args: argparse.Namespace) -> int:
    problems = Problems()
    docs = load_docs(args.rendered)
    core = [d for d in docs if is_core(str(d.get("apiVersion", "")))]
    custom = [d for d in docs if not is_core(str(d.get("apiVersion", "")))]
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "core.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    with open(os.path.join(args.outdir, "custom.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump_all(custom, f, sort_keys=False)
    configs = [
        d for d in docs if d.get("kind") == "ConfigMap" and "config.toml" in (d.get("data") or {})
    ]
    problems.check(
        len(configs) == 1,
        args.rendered,
        f"expected one ConfigMap with a config.toml key, found {len(configs)}",
    )
    if len(configs) == 1:
        with open(os.path.join(args.outdir, "config.toml"), "w", encoding="utf-8") as f:
            f.write(configs[0]["data"]["config.toml"])
    return problems.finish(
        f"{len(docs)} objects: {len(core)} in the Kubernetes schema "
        f"({', '.join(describe(d) for d in core)}), {len(custom)} custom "
        f"({', '.join(describe(d) for d in custom) or 'none'})"
    )


# --- kustomization ------------------------------------------------------------------------

KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "metadata", "resources", "components", "crds", "namespace",
    "namePrefix", "nameSuffix", "labels", "commonLabels", "commonAnnotations", "images",
    "replicas", "patches", "patchesStrategicMerge", "patchesJson6902", "replacements", "vars",
    "configMapGenerator", "secretGenerator", "generatorOptions", "generators", "transformers",
    "validators", "configurations", "openapi", "helmCharts", "helmGlobals", "buildMetadata",
    "sortOptions",
}


def generator_file(entry: str) -> str:
    return entry.split("=", 1)[1] if "=" in entry else entry


def cmd_kustomization(args: argparse.Namespace) -> int:
    problems = Problems()
    path = os.path.join(args.dir, "kustomization.yaml")
    docs = load_docs(path)
    if len(docs) != 1:
        problems.add(path, f"expected one YAML document, found {len(docs)}")
        return problems.finish("")
    k = docs[0]
    problems.check(
        k.get("apiVersion") == "kustomize.config.k8s.io/v1beta1",
        path, f"apiVersion {k.get('apiVersion')!r} is not kustomize.config.k8s.io/v1beta1",
    )
    problems.check(k.get("kind") == "Kustomization", path, f"kind {k.get('kind')!r}")
    for key in sorted(set(k) - KUSTOMIZATION_FIELDS):
        problems.add(path, f"unknown field {key!r}")
    resources = k.get("resources") or []
    problems.check(bool(resources), path, "no resources")
    for res in resources:
        target = os.path.join(args.dir, res)
        if os.path.isdir(target):
            problems.check(
                os.path.isfile(os.path.join(target, "kustomization.yaml")),
                path, f"resource {res!r} is a directory without a kustomization.yaml",
            )
        elif os.path.isfile(target):
            for obj in load_docs(target):
                for field in ("apiVersion", "kind"):
                    problems.check(bool(obj.get(field)), target, f"an object has no {field}")
                problems.check(
                    bool((obj.get("metadata") or {}).get("name")),
                    target, f"{describe(obj)} has no metadata.name",
                )
        else:
            problems.add(path, f"resource {res!r} does not exist")
    for gen in (k.get("configMapGenerator") or []) + (k.get("secretGenerator") or []):
        problems.check(bool(gen.get("name")), path, "a generator has no name")
        for entry in gen.get("files") or []:
            problems.check(
                os.path.isfile(os.path.join(args.dir, generator_file(entry))),
                path, f"generator {gen.get('name')!r}: file {entry!r} does not exist",
            )
    for patch in k.get("patches") or []:
        if "path" in patch:
            problems.check(
                os.path.isfile(os.path.join(args.dir, patch["path"])),
                path, f"patch {patch['path']!r} does not exist",
            )
        else:
            problems.check("patch" in patch, path, "a patch has neither path nor patch")
    for rep in k.get("replicas") or []:
        problems.check(
            bool(rep.get("name")) and isinstance(rep.get("count"), int) and rep["count"] >= 0,
            path, f"replicas entry {rep!r} needs a name and a count >= 0",
        )
    for image in k.get("images") or []:
        problems.check(bool(image.get("name")), path, f"images entry {image!r} has no name")
    return problems.finish(f"{path}: well formed, {len(resources)} resource(s) found")


# --- workloads ----------------------------------------------------------------------------

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


def workloads(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") in WORKLOAD_KINDS]


def pod_spec(workload: dict) -> dict:
    return ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_meta(workload: dict) -> dict:
    return ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}


def all_containers(spec: dict) -> list[dict]:
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(match or selector.get("matchExpressions"))


# --- podmonitor ---------------------------------------------------------------------------

# monitoring.coreos.com/v1 PodMonitor: the fields of spec and of a podMetricsEndpoints entry.
PODMONITOR_SPEC_FIELDS = {
    "jobLabel", "podTargetLabels", "podMetricsEndpoints", "selector", "selectorMechanism",
    "namespaceSelector", "sampleLimit", "targetLimit", "scrapeProtocols",
    "fallbackScrapeProtocol", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
    "scrapeClassicHistograms", "scrapeNativeHistograms", "nativeHistogramBucketLimit",
    "nativeHistogramMinBucketFactor", "convertClassicHistogramsToNHCB", "keepDroppedTargets",
    "attachMetadata", "scrapeClass", "bodySizeLimit",
}
PODMONITOR_ENDPOINT_FIELDS = {
    "port", "portNumber", "targetPort", "path", "scheme", "params", "interval",
    "scrapeTimeout", "honorLabels", "honorTimestamps", "trackTimestampsStaleness",
    "metricRelabelings", "relabelings", "filterRunning", "enableHttp2", "followRedirects",
    "proxyUrl", "noProxy", "proxyFromEnvironment", "proxyConnectHeader", "basicAuth",
    "bearerTokenSecret", "authorization", "oauth2", "tlsConfig",
}
PROM_DURATION = re.compile(r"^((\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?|0)$")


def cmd_podmonitor(args: argparse.Namespace) -> int:
    problems = Problems()
    docs = load_all(args.files)
    monitors = [d for d in docs if d.get("kind") == "PodMonitor"]
    problems.check(bool(monitors), "manifests", "no PodMonitor found")
    for pm in monitors:
        where = describe(pm)
        problems.check(
            pm.get("apiVersion") == "monitoring.coreos.com/v1",
            where, f"apiVersion {pm.get('apiVersion')!r} is not monitoring.coreos.com/v1",
        )
        for key in sorted(set(pm) - {"apiVersion", "kind", "metadata", "spec"}):
            problems.add(where, f"unknown top-level field {key!r}")
        spec = pm.get("spec") or {}
        for key in sorted(set(spec) - PODMONITOR_SPEC_FIELDS):
            problems.add(where, f"unknown field spec.{key}")
        selector = spec.get("selector") or {}
        problems.check(
            bool(selector.get("matchLabels") or selector.get("matchExpressions")),
            where, "spec.selector selects nothing (an empty selector would select every pod)",
        )
        endpoints = spec.get("podMetricsEndpoints") or []
        problems.check(bool(endpoints), where, "no spec.podMetricsEndpoints")
        pods = [w for w in workloads(docs) if selects(selector, pod_meta(w).get("labels") or {})]
        problems.check(bool(pods), where, "its selector matches no pod template in the manifests")
        for i, ep in enumerate(endpoints):
            at = f"{where} podMetricsEndpoints[{i}]"
            for key in sorted(set(ep) - PODMONITOR_ENDPOINT_FIELDS):
                problems.add(at, f"unknown field {key!r}")
            port = ep.get("port")
            problems.check(isinstance(port, str) and bool(port), at, "port must name a port")
            path = ep.get("path", "/metrics")
            problems.check(str(path).startswith("/"), at, f"path {path!r} must start with /")
            for key in ("interval", "scrapeTimeout"):
                if key in ep:
                    problems.check(
                        bool(PROM_DURATION.match(str(ep[key]))), at, f"{key} {ep[key]!r}"
                    )
            for w in pods:
                names = {
                    p.get("name")
                    for c in all_containers(pod_spec(w))
                    for p in c.get("ports") or []
                }
                problems.check(
                    port in names, at, f"{describe(w)}'s pod has no container port named {port!r}"
                )
    return problems.finish(
        f"{len(monitors)} PodMonitor(s) well formed, selecting pods with the scraped port"
    )


# --- sidecar ------------------------------------------------------------------------------


def probe_target(probe: dict | None) -> tuple[str | None, object]:
    get = (probe or {}).get("httpGet") or {}
    return get.get("path"), get.get("port")


def port_matches(ref: object, container: dict, number: int) -> bool:
    """Whether a probe's port (a name or a number) reaches `number` in `container`."""
    if isinstance(ref, int):
        return ref == number
    return any(
        p.get("name") == ref and p.get("containerPort") == number
        for p in container.get("ports") or []
    )


def effective(field: str, container: dict, pod: dict):
    csc = container.get("securityContext") or {}
    psc = pod.get("securityContext") or {}
    return csc[field] if field in csc else psc.get(field)


def config_arg(container: dict) -> str | None:
    argv = (container.get("command") or []) + (container.get("args") or [])
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    # The image's default CMD names this file.
    return env.get("PAYGUARD_CONFIG", "/etc/payguard/config.toml")


def mount_for(path: str, container: dict) -> dict | None:
    """The volume mount holding `path` (the longest matching mountPath)."""
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    return best


def volume_sources(volume: dict) -> list[tuple[str, dict]]:
    """A volume's ("configMap" | "secret", source) pairs: itself, or a projected volume's."""
    if "projected" in volume:
        return [
            (kind, src[kind])
            for src in (volume["projected"] or {}).get("sources") or []
            for kind in ("configMap", "secret")
            if kind in src
        ]
    return [(kind, volume[kind]) for kind in ("configMap", "secret") if kind in volume]


def configmap_keys(name: str, docs: list[dict]) -> set[str] | None:
    """The keys of ConfigMap `name` in the manifests; None when it is not among them."""
    maps = [
        d for d in docs
        if d.get("kind") == "ConfigMap" and (d.get("metadata") or {}).get("name") == name
    ]
    return set((maps[0].get("data") or {})) if maps else None


def provides(kind: str, src: dict, name: str, docs: list[dict]) -> bool:
    """Whether a volume source puts file `name` (relative to the mount) there. A source
    without `items` projects every key of its object: a ConfigMap's keys are checked when it
    is in the manifests; a Secret's cannot be (Secrets are created by hand), so it may."""
    items = src.get("items")
    if items is not None:
        return any(i.get("path") == name for i in items)
    if kind == "configMap":
        keys = configmap_keys(src.get("name"), docs)
        return keys is None or name in keys
    return True


def in_pod(path: str, cfg_path: str) -> str:
    """Where a path the config names is in the pod (relative: from the config's directory)."""
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(cfg_path), path)


def check_secrets(pg: dict, spec: dict, docs: list[dict], facts: dict, cfg_path: str,
                  problems: Problems, where: str) -> None:
    """Every secret the config names comes from a Secret, there is an admin token when the
    admin listener is reachable from outside, and the journal is never allowed in clear."""
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for key, file in facts["secret_files"].items():
        path = in_pod(file, cfg_path)
        mount = mount_for(path, pg)
        kinds = set()
        if mount is not None:
            name = os.path.relpath(path, mount["mountPath"])
            for kind, src in volume_sources(volumes.get(mount.get("name")) or {}):
                if provides(kind, src, name, docs) and (
                    kind == "secret" or configmap_keys(src.get("name"), docs) is not None
                ):
                    kinds.add(kind)
        problems.check(
            kinds == {"secret"},
            where, f"{key} = {file!r} ({path}) is not a file of a mounted Secret"
            + (" (a ConfigMap holds it)" if "configMap" in kinds else ""),
        )
    env = {e.get("name"): e for e in pg.get("env") or []}
    for key, name in facts["secret_envs"].items():
        ref = ((env.get(name) or {}).get("valueFrom") or {}).get("secretKeyRef")
        problems.check(
            bool(ref), where, f"{key} = {name!r}: the container has no {name} from a Secret"
        )
    admin_host, _ = facts["admin"]
    token = "admin.token_file" in facts["secret_files"] or "admin.token_env" in facts["secret_envs"]
    problems.check(
        token or admin_host in ("127.0.0.1", "localhost", "::1"),
        where, "no [admin] token_file or token_env: with listen.admin reachable from the pod "
        "network, payguard refuses every give-up",
    )
    problems.check(
        not facts["plaintext_journal"], where,
        "resolver.allow_plaintext_journal = true: seal the journal with encryption_key_file",
    )


def check_sidecar(w: dict, docs: list[dict], facts: dict, problems: Problems) -> None:
    spec, meta = pod_spec(w), pod_meta(w)
    inits = {c.get("name"): c for c in spec.get("initContainers") or []}
    mains = spec.get("containers") or []
    pg = inits.get("payguard") or next((c for c in mains if c.get("name") == "payguard"), None)
    where = f"{describe(w)} container payguard"
    if pg is None:
        problems.add(describe(w), "no container named payguard")
        return
    # Native sidecar.
    problems.check(
        "payguard" in inits and pg.get("restartPolicy") == "Always",
        where, "is not a native sidecar (an init container with restartPolicy: Always)",
    )
    image = str(pg.get("image", ""))
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    problems.check(
        "@" in image or (tag and tag != "latest"), where, f"image {image!r} needs a fixed tag"
    )
    # Listeners, probes, scraping.
    admin_host, admin_port = facts["admin"]
    proxy_host, proxy_port = facts["proxy"]
    problems.check(
        admin_host in ("0.0.0.0", "::", ""),
        where, f"listen.admin {admin_host}:{admin_port} is unreachable for the kubelet's probes",
    )
    problems.check(
        proxy_host in ("127.0.0.1", "localhost", "::1"),
        where, f"listen.proxy {proxy_host}:{proxy_port} is not loopback: it would be open to "
        "the pod network",
    )
    problems.check(
        any(
            p.get("name") == "admin" and p.get("containerPort") == admin_port
            for p in pg.get("ports") or []
        ),
        where, f"no port named admin with containerPort {admin_port} (listen.admin)",
    )
    expected = {
        "livenessProbe": ("/healthz",),
        "readinessProbe": ("/readyz",),
        "startupProbe": ("/readyz", "/healthz"),
    }
    for probe, paths in expected.items():
        if probe == "startupProbe" and probe not in pg:
            continue
        path, port = probe_target(pg.get(probe))
        problems.check(
            path in paths and port_matches(port, pg, admin_port),
            where, f"{probe} should GET {' or '.join(paths)} on the admin port {admin_port}, "
            f"has {path!r} on {port!r}",
        )
    ann = meta.get("annotations") or {}
    problems.check(
        ann.get("prometheus.io/scrape") == "true"
        and ann.get("prometheus.io/port") == str(admin_port)
        and ann.get("prometheus.io/path", "/metrics") == "/metrics",
        describe(w), f"pod annotations should have Prometheus scrape /metrics on {admin_port}",
    )
    # The app's Stripe base URL.
    urls = [
        e.get("value", "")
        for c in mains
        if c.get("name") != "payguard"
        for e in c.get("env") or []
    ]
    proxied = [
        u for u in urls
        if u.startswith("http://")
        and urlsplit(u).hostname in ("127.0.0.1", "localhost", "::1")
        and urlsplit(u).port == proxy_port
    ]
    problems.check(
        bool(proxied), describe(w),
        f"no app container sets a base URL http://127.0.0.1:{proxy_port} (listen.proxy)",
    )
    # Config and store mounts.
    cfg_path = config_arg(pg)
    mount = mount_for(cfg_path, pg) if cfg_path else None
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    if mount is None:
        problems.add(where, f"its config {cfg_path} is on no volume")
    else:
        key = os.path.relpath(cfg_path, mount["mountPath"])
        sources = volume_sources(volumes.get(mount.get("name")) or {})
        cm = next(
            (src for kind, src in sources if kind == "configMap" and provides(kind, src, key, docs)),
            {},
        )
        maps = [
            d for d in docs
            if d.get("kind") == "ConfigMap" and (d.get("metadata") or {}).get("name") == cm.get("name")
        ]
        problems.check(bool(cm), where, f"{cfg_path} does not come from a ConfigMap")
        if cm and any(d.get("kind") == "ConfigMap" for d in docs):
            problems.check(
                any(key in (d.get("data") or {}) for d in maps),
                where, f"ConfigMap {cm.get('name')!r} with key {key!r} is not in the manifests",
            )
    if cfg_path:
        check_secrets(pg, spec, docs, facts, cfg_path, problems, where)
    if facts["store"] == "embedded":
        store = facts["store_path"]
        if not os.path.isabs(store) and cfg_path:
            store = os.path.join(os.path.dirname(cfg_path), store)
        smount = mount_for(os.path.dirname(store), pg)
        problems.check(
            smount is not None and not smount.get("readOnly", False)
            and (volumes.get(smount.get("name")) or {}).get("configMap") is None,
            where, f"the store's directory {os.path.dirname(store)} is on no writable volume",
        )
    # Security.
    wanted = {
        "runAsNonRoot": True,
        "runAsUser": PAYGUARD_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    }
    for field, value in wanted.items():
        got = effective(field, pg, spec)
        problems.check(got == value, where, f"securityContext.{field} is {got!r}, want {value!r}")
    caps = ((pg.get("securityContext") or {}).get("capabilities") or {}).get("drop") or []
    problems.check("ALL" in caps, where, "securityContext.capabilities.drop lacks ALL")
    seccomp = (effective("seccompProfile", pg, spec) or {}).get("type")
    problems.check(seccomp == "RuntimeDefault", where, f"seccompProfile {seccomp!r}")
    res = pg.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            problems.check(r in (res.get(kind) or {}), where, f"no resources.{kind}.{r}")
    # Shutdown.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    problems.check(
        grace > facts["drain"], describe(w),
        f"terminationGracePeriodSeconds {grace} must exceed server.drain_timeout "
        f"({facts['drain']:g}s)",
    )


def cmd_sidecar(args: argparse.Namespace) -> int:
    problems = Problems()
    facts = config_facts(args.config)
    docs = load_all(args.files)
    found = [
        w for w in workloads(docs)
        if any(c.get("name") == "payguard" for c in all_containers(pod_spec(w)))
    ]
    problems.check(bool(found), "manifests", "no workload runs a payguard container")
    for w in found:
        check_sidecar(w, docs, facts, problems)
    names = ", ".join(describe(w) for w in found)
    return problems.finish(f"{names}: payguard sidecar agrees with {args.config}")


# --- placeholders -------------------------------------------------------------------------

PLACEHOLDERS = {
    "admin.token_file": "placeholder-admin-token-0123456789\n",
    "resolver.encryption_key_file": "0" * 64 + "\n",
    "resolver.webhook.secret_file": "placeholder-webhook-secret-0123456789\n",
}


def cmd_placeholders(args: argparse.Namespace) -> int:
    problems = Problems()
    base = os.path.dirname(os.path.abspath(args.config))
    written = []
    for key, file in secret_files(load_config(args.config)).items():
        if os.path.isabs(file):
            problems.add(args.config, f"{key} = {file!r} is absolute: no placeholder can stand in")
            continue
        path = os.path.join(base, file)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(PLACEHOLDERS[key])
            written.append(f"{key} ({file})")
    return problems.finish(f"placeholders for {', '.join(written) or 'nothing'}")


# --- dockerfile ---------------------------------------------------------------------------


def dockerfile_instructions(path: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            stripped = line.strip()
            if not buf and (not stripped or stripped.startswith("#")):
                continue
            if buf and stripped.startswith("#"):
                continue
            if stripped.endswith("\\"):
                buf += stripped[:-1] + " "
                continue
            buf += stripped
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore drops `path` (a simplified reading of its rules)."""
    result = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pat = raw[1:] if negate else raw
        pat = pat.strip("/")
        variants = {pat, pat[3:]} if pat.startswith("**/") else {pat}
        if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
            result = not negate
    return result


def cmd_dockerfile(args: argparse.Namespace) -> int:
    problems = Problems()
    facts = config_facts(args.config)
    instrs = dockerfile_instructions(args.dockerfile)
    froms = [i for i, (w, _) in enumerate(instrs) if w == "FROM"]
    problems.check(len(froms) >= 2, args.dockerfile, "not a multi-stage build")
    final = instrs[froms[-1]:] if froms else instrs
    base = final[0][1].split()[0] if final else ""
    problems.check(
        base.startswith("gcr.io/distroless/static") or base == "scratch",
        args.dockerfile, f"runtime image {base!r} is neither distroless/static nor scratch",
    )

    def last(word: str) -> str | None:
        vals = [rest for w, rest in final if w == word]
        return vals[-1] if vals else None

    user = last("USER") or ""
    problems.check(
        user.split(":")[0] in (str(PAYGUARD_UID), "nonroot"), args.dockerfile,
        f"runs as {user!r}, not {PAYGUARD_UID}",
    )
    problems.check(
        last("ENTRYPOINT") == '["/payguard"]', args.dockerfile,
        f"ENTRYPOINT {last('ENTRYPOINT')!r}",
    )
    problems.check(
        last("CMD") == '["run", "--config", "/etc/payguard/config.toml"]',
        args.dockerfile, f"CMD {last('CMD')!r}",
    )
    exposed = {p.split("/")[0] for w, rest in final if w == "EXPOSE" for p in rest.split()}
    for name in ("proxy", "admin"):
        port = str(facts[name][1])
        problems.check(port in exposed, args.dockerfile, f"EXPOSE lacks {port} (listen.{name})")
    volumes = " ".join(rest for w, rest in final if w == "VOLUME")
    store_dir = os.path.dirname(facts["store_path"])
    for vol in ("/etc/payguard", store_dir):
        problems.check(f'"{vol}"' in volumes, args.dockerfile, f"VOLUME lacks {vol}")
    problems.check(
        not any(w == "HEALTHCHECK" and rest != "NONE" for w, rest in final),
        args.dockerfile, "a HEALTHCHECK cannot run without a shell or curl in the image",
    )
    with open(args.dockerignore, encoding="utf-8") as f:
        patterns = [
            ln.strip() for ln in f if ln.strip() and not ln.strip().startswith("#")
        ]
    for want in ("target", ".git", "data", "bench/out"):
        problems.check(ignored(want, patterns), args.dockerignore, f"does not exclude {want}/")
    sources = []
    for w, rest in instrs:
        if w in ("COPY", "ADD") and "--from=" not in rest:
            words = [x for x in rest.split() if not x.startswith("--")]
            sources += words[:-1]
    for src in sources:
        problems.check(
            not ignored(src, patterns), args.dockerignore,
            f"excludes {src}, which the Dockerfile copies",
        )
        problems.check(os.path.exists(src), args.dockerfile, f"copies {src}, which is missing")
    return problems.finish(
        f"{args.dockerfile}: runtime {base} as {user}, {len(sources)} copied path(s) kept by "
        f"{args.dockerignore}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("split")
    p.add_argument("rendered")
    p.add_argument("outdir")
    p.set_defaults(func=cmd_split)
    p = sub.add_parser("kustomization")
    p.add_argument("dir")
    p.set_defaults(func=cmd_kustomization)
    p = sub.add_parser("podmonitor")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_podmonitor)
    p = sub.add_parser("sidecar")
    p.add_argument("--config", required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_sidecar)
    p = sub.add_parser("placeholders")
    p.add_argument("config")
    p.set_defaults(func=cmd_placeholders)
    p = sub.add_parser("dockerfile")
    p.add_argument("dockerfile")
    p.add_argument("dockerignore")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_dockerfile)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

//! The files in deploy/: the scrape config passes promtool, the systemd unit passes
//! systemd-analyze, and every metric the Grafana dashboard queries is one /metrics serves.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
};

use irq_user::{
    render::{metrics, Options},
    system::watch,
};
use irqtune_test_support::MachineSpec;

fn deploy(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn tool(name: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} is not installed: run `cargo xtask setup`"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What /metrics serves, from the watch's own renderer on a synthetic 48-CPU machine: the
/// metric families (every family has its # TYPE line even when it has no samples) and, per
/// sample name (`x_bucket` apart from `x`), the label names its samples carry.
struct Served {
    families: BTreeSet<String>,
    labels: BTreeMap<String, BTreeSet<String>>,
}

fn served(opts: Options) -> Served {
    let t = tempfile::tempdir().unwrap();
    let spec = MachineSpec::two_socket_server();
    spec.write(t.path()).unwrap();
    let mut p = spec.synthetic_profile(t.path(), 10);
    // A live watch knows its maps' memory.
    p.session.bpf_map_bytes = Some(3 << 20);
    let text = watch::metrics_text(&p, &p.session.probes, 0, 1, opts);
    let families = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap().to_string();
        let set = labels.entry(name).or_default();
        if let Some(body) = line.split_once('{').and_then(|(_, r)| r.rsplit_once('}')) {
            // key="value" pairs; values are escaped, so a quote ends one only when unescaped.
            let mut rest = body.0;
            while let Some((key, after)) = rest.split_once("=\"") {
                set.insert(key.trim_start_matches(',').to_string());
                let mut end = 0;
                let bytes = after.as_bytes();
                while end < bytes.len()
                    && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\'))
                {
                    end += 1;
                }
                rest = &after[(end + 1).min(after.len())..];
            }
        }
    }
    Served { families, labels }
}

/// Every `irqtune_*` name in a PromQL expression.
fn metric_names(e: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(pos) = e[i..].find("irqtune_") {
        let start = i + pos;
        let end = start
            + e[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(e.len() - start);
        out.push(e[start..end].to_string());
        i = end.max(start + 1);
    }
    out
}

/// Label names an expression needs: its `by (...)` groupings and `{label=...}` matchers
/// (less those Prometheus adds at scrape time).
fn needed_labels(e: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in e.split("by (").skip(1) {
        let list = part.split(')').next().unwrap();
        out.extend(list.split(',').map(|l| l.trim().to_string()));
    }
    for part in e.split('{').skip(1) {
        let body = part.split('}').next().unwrap();
        for m in body.split(',') {
            if let Some(k) = m.split(['=', '!', '~']).next() {
                out.insert(k.trim().to_string());
            }
        }
    }
    out.retain(|l| !l.is_empty() && l != "instance" && l != "job");
    out
}

fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" || k == "definition" {
                        out.push(v.as_str().unwrap_or_default().to_string());
                    }
                    walk(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    exprs
}

/// /metrics serves the catalogue's families (all but the report's duration), each sample
/// with the labels the catalogue gives its family, and nothing else.
#[test]
fn served_families_are_the_catalogue() {
    for per_cpu in [false, true] {
        let served = served(Options {
            per_cpu_histograms: per_cpu,
        });
        let want: BTreeSet<String> = metrics::ALL
            .iter()
            .filter(|m| m.name != metrics::PROFILE_DURATION.name)
            .map(|m| m.name.to_string())
            .collect();
        assert_eq!(served.families, want);
        for m in metrics::ALL {
            let mut allowed: BTreeSet<String> = m.labels.iter().map(|l| l.to_string()).collect();
            if per_cpu && m.per_cpu_option {
                allowed.insert("cpu".into());
            }
            for series in metrics::series_names(m) {
                let mut allowed = allowed.clone();
                if series.ends_with("_bucket") {
                    allowed.insert("le".into());
                }
                if let Some(have) = served.labels.get(&series) {
                    assert_eq!(have, &allowed, "{series} (per-CPU: {per_cpu})");
                }
            }
        }
    }
}

/// Every query of the dashboard reads a served metric by labels that metric has, in the
/// default exposition and with --per-cpu-histograms alike.
#[test]
fn dashboard_queries_only_served_metrics() {
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 10,
        "the dashboard has its queries: {exprs:?}"
    );
    for opts in [
        Options::default(),
        Options {
            per_cpu_histograms: true,
        },
    ] {
        let served = served(opts);
        let mut used = BTreeSet::new();
        let mut label_checked = 0;
        for e in &exprs {
            let needed = needed_labels(e);
            for name in metric_names(e) {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| {
                        name.strip_suffix(s)
                            .filter(|f| served.families.contains(*f))
                    })
                    .unwrap_or(&name);
                assert!(
                    served.families.contains(family),
                    "{opts:?}: the dashboard queries {name}, which /metrics does not serve (served: {:?})",
                    served.families
                );
                // A family without samples on the synthetic machine (losses): the labels the
                // catalogue gives it.
                let described = metrics::ALL.iter().find(|m| m.name == family).map(|m| {
                    m.labels
                        .iter()
                        .map(|l| l.to_string())
                        .collect::<BTreeSet<_>>()
                });
                if let Some(have) = served.labels.get(&name).or(described.as_ref()) {
                    let missing: Vec<_> = needed.difference(have).collect();
                    assert!(
                        missing.is_empty(),
                        "{opts:?}: `{e}` needs labels {missing:?} that {name} does not carry ({have:?})"
                    );
                    label_checked += 1;
                }
                used.insert(name);
            }
        }
        assert!(
            label_checked >= 12,
            "{opts:?}: {label_checked} queries had their labels checked"
        );
        for want in [
            "irqtune_softirq_handler_seconds",
            "irqtune_softirq_raise_delay_seconds",
            "irqtune_cpu_softirq_seconds_total",
            "irqtune_cpu_net_rx_seconds_total",
            "irqtune_net_rx_packets_total",
            "irqtune_flow_mismatch_ratio",
            "irqtune_finding",
        ] {
            assert!(
                used.iter().any(|u| u.starts_with(want)),
                "dashboard shows {want}"
            );
        }
    }
    // The check itself notices a query by a label the metric lacks.
    let served = served(Options::default());
    let e = "sum by (cpu) (rate(irqtune_softirq_handler_seconds_sum[1m]))";
    assert!(!needed_labels(e).is_subset(&served.labels["irqtune_softirq_handler_seconds_sum"]));
}

#[test]
fn scrape_config_passes_promtool() {
    let out = Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(deploy("prometheus.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_verifies() {
    let t = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy("irqtune-watch.service")).unwrap();
    assert!(
        unit.contains("CapabilityBoundingSet=")
            && unit.contains("ProtectSystem=strict")
            && unit.contains("Restart=on-failure")
    );
    // systemd-analyze needs the ExecStart binary to exist: point it at the one just built.
    let path = t.path().join("irqtune-watch.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/irqtune", env!("CARGO_BIN_EXE_irqtune")),
    )
    .unwrap();
    let out = Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    // And it would notice a mistake.
    let bad = t.path().join("bad.service");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("ProtectHome=yes", "ProtectHomee=yes"),
    )
    .unwrap();
    let out = Command::new(tool("systemd-analyze"))
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "a typo is reported"
    );
}

#[test]
fn openmetrics_conversion() {
    let prom = "# HELP a_total x\n# TYPE a_total counter\na_total{cpu=\"0\"} 3\n# HELP g y\n# TYPE g gauge\ng 1\n";
    let om = watch::to_openmetrics(prom);
    assert_eq!(om, "# HELP a x\n# TYPE a counter\na_total{cpu=\"0\"} 3\n# HELP g y\n# TYPE g gauge\ng 1\n# EOF\n");
}

#[test]
fn a_disabled_probe_shows_as_zero() {
    let t = tempfile::tempdir().unwrap();
    let spec = MachineSpec::vm();
    spec.write(t.path()).unwrap();
    let p = spec.synthetic_profile(t.path(), 1);
    let mut probes = p.session.probes.clone();
    probes[0].attach = irq_user::model::profile::Attach::Disabled;
    probes[0].reason = Some("tracepoint missing".into());
    let text = watch::metrics_text(&p, &probes, 0, 1, Default::default());
    assert!(
        text.contains(
            "irqtune_probe_attached{tracepoint=\"irq:irq_handler_entry\",attach=\"disabled\"} 0"
        ),
        "{text}"
    );
    assert!(text
        .contains("irqtune_probe_attached{tracepoint=\"irq:irq_handler_exit\",attach=\"btf\"} 1"));
}

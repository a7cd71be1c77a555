//! Every report format on three profiles: one recorded on the 2-CPU test VM (veth traffic
//! with RPS on CPU 0 and the reader on CPU 1), and synthetic ones of a 64-CPU server with a
//! 16-queue NIC and a 48-CPU two-socket server (masks past 32 CPUs). Outputs are compared
//! with golden files (IRQTUNE_UPDATE_GOLDEN=1 rewrites them), and each format is also
//! checked by reading it back.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hdrhistogram::serialization::{
    interval_log::{IntervalLogIterator, LogEntry},
    Deserializer,
};
use irq_user::{
    model::profile::Profile,
    render::{self, Format, Options},
};
use irqtune_test_support::MachineSpec;

const FORMATS: [Format; 6] = [
    Format::Text,
    Format::Json,
    Format::Csv,
    Format::Html,
    Format::Prometheus,
    Format::Hdrlog,
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn profiles() -> Vec<(&'static str, Profile)> {
    let vm = irq_user::system::files::load_profile(&dir().join("fixtures/vm-profile.json"))
        .expect("recorded VM profile");
    let synth = |spec: MachineSpec| {
        let t = tempfile::tempdir().unwrap();
        spec.write(t.path()).unwrap();
        spec.synthetic_profile(t.path(), 10)
    };
    vec![
        ("vm", vm),
        ("server-64cpu", synth(MachineSpec::server_64cpu())),
        ("two-socket-48cpu", synth(MachineSpec::two_socket_server())),
    ]
}

#[test]
fn outputs_match_the_golden_files() {
    let update = std::env::var_os("IRQTUNE_UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for (name, p) in profiles() {
        for f in FORMATS {
            let out = render::render(&p, f, Options::default());
            let path = dir()
                .join("golden")
                .join(format!("{name}.{}", f.extension()));
            if update {
                std::fs::write(&path, &out).unwrap();
                continue;
            }
            let want = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (IRQTUNE_UPDATE_GOLDEN=1 makes it)", path.display())
            });
            if want != out {
                let got = dir()
                    .join("golden")
                    .join(format!("{name}.{}.new", f.extension()));
                std::fs::write(&got, &out).unwrap();
                stale.push(format!(
                    "{} (new output in {})",
                    path.display(),
                    got.display()
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "outputs differ from the golden files; review and rerun with IRQTUNE_UPDATE_GOLDEN=1:\n{}",
        stale.join("\n")
    );
}

#[test]
fn json_round_trips_and_findings_are_found() {
    for (name, p) in profiles() {
        let back = Profile::parse(&p.to_json(), name).unwrap();
        assert_eq!(back, p, "{name}");
    }
    let all = profiles();
    let ids = |n: &str| -> Vec<String> {
        all.iter()
            .find(|(k, _)| *k == n)
            .unwrap()
            .1
            .findings
            .iter()
            .map(|f| f.id.name().to_string())
            .collect()
    };
    assert!(
        ids("vm").contains(&"rfs_off_with_mismatch".to_string()),
        "{:?}",
        ids("vm")
    );
    for server in ["server-64cpu", "two-socket-48cpu"] {
        let f = ids(server);
        for want in [
            "net_rx_concentrated",
            "ksoftirqd_net_rx",
            "softnet_time_squeeze",
            "rfs_off_with_mismatch",
            "unsteerable_flow_mismatch",
        ] {
            assert!(
                f.contains(&want.to_string()),
                "{server}: {want} missing from {f:?}"
            );
        }
    }
    assert!(
        ids("two-socket-48cpu").contains(&"nic_irq_remote_numa".to_string()),
        "eth2 on node 1, IRQs on CPU 0"
    );
    assert!(
        ids("two-socket-48cpu").contains(&"disk_and_nic_on_one_cpu".to_string()),
        "nvme0q1 and eth2 queues on CPU 0"
    );
}

#[test]
fn busy_poll_advice_follows_how_many_napis_a_readers_flows_span() {
    let (_, mut p) = profiles().remove(1);
    let advice = |p: &Profile| -> Vec<String> {
        irq_user::analysis::findings::find(p)
            .into_iter()
            .filter(|f| f.id.name() == "busy_poll_alignment")
            .map(|f| f.title)
            .collect()
    };
    // The fixture: nginx from NAPI 8193, named from 8194, sshd (40 reads/s) without one.
    let one = advice(&p);
    assert!(
        one.iter()
            .any(|t| t.starts_with("nginx's flows all come from one NAPI")),
        "{one:?}"
    );
    assert!(
        one.iter()
            .any(|t| t.starts_with("named's flows all come from one NAPI")),
        "{one:?}"
    );
    // named's flow moved to nginx with a NAPI of its own: nginx spans two NAPIs.
    let named = p.flows.iter().position(|f| f.comm == "named").unwrap();
    let nginx_pid = p.flows.iter().find(|f| f.comm == "nginx").unwrap().pid;
    p.flows[named].pid = nginx_pid;
    p.flows[named].comm = "nginx".into();
    let two = advice(&p);
    assert_eq!(
        two,
        ["nginx's flows come from 2 NAPIs: busy polling would serve one of them"],
        "{two:?}"
    );
    // No NAPI ids (data through the backlog): no advice either way.
    for f in &mut p.flows {
        f.napi_id = None;
    }
    assert!(advice(&p).is_empty());
}

#[test]
fn prometheus_histograms_are_cumulative_and_typed() {
    for (name, p) in profiles() {
        let text =
            String::from_utf8(render::render(&p, Format::Prometheus, Options::default())).unwrap();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut last: BTreeMap<String, f64> = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (n, t) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(n.into(), t.into()).is_none(),
                    "{name}: TYPE {n} twice"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let metric = line.split(['{', ' ']).next().unwrap();
            let family = metric
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                types.contains_key(family) || types.contains_key(metric),
                "{name}: {metric} has no TYPE"
            );
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            if metric.ends_with("_bucket") {
                let series = line[..line.find("le=").unwrap()].to_string();
                if let Some(prev) = last.insert(series.clone(), value) {
                    assert!(value >= prev, "{name}: buckets not cumulative at {line}");
                }
            }
        }
        let hist_count: u64 = p.softirqs.iter().map(|r| r.handler.count()).sum();
        let served: f64 = text
            .lines()
            .filter(|l| l.starts_with("irqtune_softirq_handler_seconds_count"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(served as u64, hist_count, "{name}");
    }
}

#[test]
fn hdrlog_reads_back_with_the_hdrhistogram_reader() {
    for (name, p) in profiles() {
        let log = render::render(&p, Format::Hdrlog, Options::default());
        let mut de = Deserializer::new();
        let mut total = 0u64;
        let mut series = 0;
        for entry in IntervalLogIterator::new(&log) {
            if let LogEntry::Interval(h) = entry.expect("valid log entry") {
                let bytes = BASE64
                    .decode(h.encoded_histogram())
                    .expect("base64 histogram");
                let hist: hdrhistogram::Histogram<u64> = de
                    .deserialize(&mut bytes.as_slice())
                    .expect("histogram decodes");
                total += hist.len();
                series += 1;
                assert!(h.tag().is_some());
            }
        }
        let d = &p.flow_totals.delivery_to_read;
        let d2r = [&d.same_cpu, &d.cross_cpu];
        let want: u64 = p.irqs.iter().map(|r| r.handler.count()).sum::<u64>()
            + p.softirqs
                .iter()
                .map(|r| r.handler.count() + r.raise_delay.count())
                .sum::<u64>()
            + d2r.iter().map(|h| h.count()).sum::<u64>();
        let d2r_series = d2r.iter().filter(|h| h.count() > 0).count();
        assert_eq!(
            series,
            p.hardirqs.len() + 2 * p.softirqs.len() + d2r_series,
            "{name}"
        );
        assert_eq!(total, want, "{name}: every recorded value is in the log");
    }
}

#[test]
fn csv_has_a_row_per_kind_key_and_cpu() {
    for (name, p) in profiles() {
        let data = render::render(&p, Format::Csv, Options::default());
        let mut r = csv::Reader::from_reader(data.as_slice());
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        let d2r_rows: usize = p
            .flows
            .iter()
            .map(|f| {
                let d = &f.delivery_to_read;
                usize::from(d.same_cpu.count() > 0) + usize::from(d.cross_cpu.count() > 0)
            })
            .sum();
        let want = p.irqs.len()
            + p.hardirqs.len()
            + 2 * p.softirqs.len()
            + p.netdevs.len()
            + p.flows.len()
            + p.flows.iter().filter(|f| f.napi_id.is_some()).count()
            + d2r_rows
            + p.proc.softnet.len()
            + p.context
                .as_ref()
                .map_or(0, |m| irq_user::render::settings::of(m).len());
        assert_eq!(rows.len(), want, "{name}");
        let net_rx_cpu0 = rows
            .iter()
            .find(|r| &r[0] == "softirq_handler" && &r[1] == "NET_RX");
        assert!(
            net_rx_cpu0.is_some_and(|r| r[6].parse::<u64>().unwrap() > 0),
            "{name}: NET_RX p50"
        );
    }
}

#[test]
fn html_is_self_contained() {
    for (name, p) in profiles() {
        let html = String::from_utf8(render::render(&p, Format::Html, Options::default())).unwrap();
        assert!(
            html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"),
            "{name}"
        );
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("<script"),
            "{name}: no network, no scripts"
        );
        assert!(html.matches("<svg").count() >= 3, "{name}: charts");
        for f in &p.findings {
            assert!(
                html.contains(&f.id.name().replace('_', " "))
                    || html.contains(&html_escape(&f.title)),
                "{name}: finding {}",
                f.id.name()
            );
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn malformed_or_truncated_profile_exits_2_naming_file_and_position() {
    let t = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dir().join("fixtures/vm-profile.json")).unwrap();
    let cut = t.path().join("cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let bad = t.path().join("bad.json");
    std::fs::write(
        &bad,
        text.replacen("\"hardirqs\": [", "\"hardirqs\": [nope", 1),
    )
    .unwrap();
    let other = t.path().join("other.json");
    std::fs::write(
        &other,
        text.replacen("\"version\": 1", "\"version\": 99", 1),
    )
    .unwrap();
    for (path, want) in [(&cut, "EOF"), (&bad, "expected"), (&other, "version 99")] {
        let out = Command::new(env!("CARGO_BIN_EXE_irqtune"))
            .args(["report", path.to_str().unwrap(), "--format", "html"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(want),
            "{err}"
        );
        if path != &other {
            let pos = format!("{}:", path.display());
            let after = &err[err.find(&pos).unwrap() + pos.len()..];
            let line: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            assert!(!line.is_empty(), "a line number after the file name: {err}");
        }
        assert!(out.stdout.is_empty(), "nothing written on error");
    }
}

#[test]
fn schema_file_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profile.schema.json");
    let schema = Profile::schema();
    if std::env::var_os("IRQTUNE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &schema).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == schema,
        "{} is out of date: rerun with IRQTUNE_UPDATE_GOLDEN=1",
        path.display()
    );
}

#[test]
fn report_from_a_captured_proc_tree() {
    let t = tempfile::tempdir().unwrap();
    MachineSpec::seed_4cpu().write(t.path()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_irqtune"))
        .arg("--root")
        .arg(t.path())
        .args(["report", "--format", "text"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("source: /proc counts since boot"), "{text}");
    assert!(
        text.contains("eth3-TxRx-3") && text.contains("3587929355"),
        "{text}"
    );
}

#[test]
fn root_with_record_or_watch_is_refused_with_the_reason() {
    for cmd in ["record", "watch"] {
        let out = Command::new(env!("CARGO_BIN_EXE_irqtune"))
            .args(["--root", "/tmp/some-tree", cmd])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(
            stderr.contains("measure it; drop --root"),
            "{cmd}: {stderr}"
        );
    }
}

/// A probe family that could not attach is named, first, in the findings and the text report:
/// never "nothing stands out". Each family on its own, and two at once.
#[test]
fn incomplete_measurement_is_said_first_never_silence() {
    use irq_user::{
        analysis::findings,
        model::finding::FindingId,
        model::profile::{Attach, Family},
    };
    let (_, base) = profiles().remove(0);
    assert!(
        base.findings
            .iter()
            .all(|f| f.id != FindingId::MeasurementIncomplete),
        "every probe attached in the recorded profile"
    );
    let cases: Vec<Vec<Family>> = Family::ALL
        .iter()
        .map(|f| vec![*f])
        .chain([vec![Family::Hardirq, Family::Flows]])
        .collect();
    for missing in cases {
        let mut p = base.clone();
        for row in p.session.probes.iter_mut() {
            if Family::of_tracepoint(&row.tracepoint).is_some_and(|f| missing.contains(&f)) {
                row.attach = Attach::Disabled;
                row.reason = Some("test: every method refused".into());
            }
        }
        // A profile with no other finding must not read as a clean bill of health.
        p.flows.clear();
        p.findings = findings::find(&p);
        let incomplete: Vec<_> = p
            .findings
            .iter()
            .take_while(|f| f.id == FindingId::MeasurementIncomplete)
            .collect();
        assert_eq!(
            incomplete.len(),
            missing.len(),
            "{missing:?}: {:?}",
            p.findings
        );
        for (f, family) in incomplete.iter().zip(&missing) {
            assert!(f.title.contains(family.name()), "{}", f.title);
            assert!(
                f.evidence.contains("test: every method refused"),
                "{}",
                f.evidence
            );
        }
        let text = irq_user::render::text::render(&p);
        assert!(!text.contains("none: no interrupt"), "{missing:?}:\n{text}");
        assert!(text.contains("not measured:"), "{text}");
    }
}

/// Series in an exposition: its sample lines.
fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

/// Sum of each histogram family's `_count` samples.
fn histogram_counts(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        if let Some(family) = name.strip_suffix("_count") {
            let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            *out.entry(family.to_string()).or_default() += v;
        }
    }
    out
}

/// The default exposition grows as O(CPUs + IRQs): per-CPU counters, histograms per vector
/// and per IRQ; never CPUs x keys x buckets. --per-cpu-histograms splits the same counts by
/// CPU. Both pass promtool. `-- --nocapture` prints the table BENCHMARKS.md holds.
#[test]
fn prometheus_series_are_bounded_by_default() {
    let synth = |spec: MachineSpec| {
        let t = tempfile::tempdir().unwrap();
        spec.write(t.path()).unwrap();
        spec.synthetic_profile(t.path(), 10)
    };
    let per_cpu = Options {
        per_cpu_histograms: true,
    };
    println!("| profile | CPUs | IRQs | vectors | default series | --per-cpu-histograms |");
    let mut defaults = BTreeMap::new();
    for (name, p) in [
        ("two-socket-48cpu", synth(MachineSpec::two_socket_server())),
        ("server-64cpu", synth(MachineSpec::server_64cpu())),
        ("server-256cpu", synth(MachineSpec::server_256cpu())),
    ] {
        let text = |o| String::from_utf8(render::render(&p, Format::Prometheus, o)).unwrap();
        let (default, opt_in) = (text(Options::default()), text(per_cpu));
        let cpus = p.cpus().len();
        let irqs: std::collections::BTreeSet<_> =
            p.hardirqs.iter().map(|r| (r.irq, &r.name)).collect();
        let vectors: std::collections::BTreeSet<_> = p.softirqs.iter().map(|r| r.vector).collect();
        println!(
            "| {name} | {cpus} | {} | {} | {} | {} |",
            irqs.len(),
            vectors.len(),
            series(&default),
            series(&opt_in)
        );
        // 26 series per histogram (23 buckets, +Inf, sum, count); 11 per-CPU counters.
        let bound = 11 * cpus + 26 * (irqs.len() + 2 * vectors.len()) + vectors.len() + 100;
        assert!(
            series(&default) <= bound,
            "{name}: {} series, more than O(CPUs + IRQs) allows ({bound})",
            series(&default)
        );
        assert!(series(&opt_in) > series(&default), "{name}");
        assert_eq!(
            histogram_counts(&default),
            histogram_counts(&opt_in),
            "{name}: the per-vector and per-IRQ histograms hold every event the per-CPU ones do"
        );
        for (mode, t) in [("default", &default), ("--per-cpu-histograms", &opt_in)] {
            let mut child = std::process::Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("promtool is installed (cargo xtask setup)");
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(t.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{name} {mode}: promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        defaults.insert(name, series(&default));
    }
    assert!(
        defaults["server-64cpu"] <= 1500,
        "the 64-CPU server's default exposition: {} series",
        defaults["server-64cpu"]
    );
}

#[test]
fn hardirq_probe_runs_are_set_against_proc_counts() {
    let (_, mut p) = profiles().swap_remove(0);
    let row = p
        .proc
        .interrupts
        .iter_mut()
        .find(|r| r.id.parse::<u32>().is_ok())
        .expect("a numbered IRQ in the fixture");
    row.counts[0] += 1000;
    let counted = p.proc.numbered_irq_runs();
    let text = |p: &Profile| {
        String::from_utf8(render::render(p, Format::Text, Options::default())).unwrap()
    };
    // The kernel kept no count: nothing said.
    assert!(!text(&p).contains("hardirq probe:"));
    p.session.hardirq_probe_runs = Some(counted - 5);
    // Marks read 2 ms apart in a session of `counted` ms (a run per ms): about 2 fall between.
    p.session.duration_ns = counted * 1_000_000;
    p.session.mark_skew_ns = Some(2_000_000);
    assert!(text(&p).contains(&format!(
        "the kernel ran it {} times for the {counted} handler runs /proc/interrupts counted: \
         5 without the probe (about 2 of those can be runs between the reads)",
        counted - 5
    )));
    p.session.hardirq_probe_runs = Some(counted);
    let t = text(&p);
    assert!(t.contains("hardirq probe:") && !t.contains("without the probe"));
}

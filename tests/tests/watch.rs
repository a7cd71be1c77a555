//! `irqtune watch` under traffic: /metrics scraped over HTTP passes promtool, counters only
//! grow, NET_RX agrees with /proc/softirqs, SIGTERM ends it cleanly.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use irq_user::model::procfs;
use irq_user::system::sysroot::SysRoot;
use irqtune_tests::{
    arrivals_within, irqtune_bin, irqtune_programs_loaded, kernel_test, nanos, tcp_flow, NetnsPair,
};

const LISTEN: &str = "127.0.0.1:19810";
/// The watch's interval in this file's tests, seconds.
const INTERVAL_SECS: u64 = 1;
/// How often a fresh scrape is polled for.
const POLL: Duration = Duration::from_millis(100);

fn scrape() -> Option<String> {
    let mut s = TcpStream::connect(LISTEN).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {LISTEN}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Sample lines: "name{labels}" -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

fn last_update(text: &str) -> f64 {
    samples(text)["irqtune_watch_last_update_time_seconds"]
}

/// Waits for a scrape published after `after` (Unix seconds).
fn fresh_scrape(after: f64) -> String {
    let start = Instant::now();
    loop {
        if let Some(t) = scrape() {
            if last_update(&t) > after {
                return t;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no fresh /metrics within 10 s"
        );
        std::thread::sleep(POLL);
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// NET_RX runs per CPU, from the per-CPU counter of the default (bounded) exposition.
fn net_rx(text: &str) -> BTreeMap<u32, f64> {
    samples(text)
        .into_iter()
        .filter(|(k, _)| k.starts_with("irqtune_cpu_net_rx_runs_total{"))
        .map(|(k, v)| {
            let cpu = k
                .split("cpu=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (cpu, v)
        })
        .collect()
}

fn proc_net_rx() -> BTreeMap<u32, f64> {
    let s = procfs::read_softirqs(&SysRoot::default()).unwrap();
    s.cpus
        .iter()
        .map(|&c| (c, s.count("NET_RX", c) as f64))
        .collect()
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `irqtune watch` at this file's interval and address, with `args`.
fn start_watch(args: &[&str]) -> Child {
    Child(
        Command::new(irqtune_bin())
            .args([
                "watch",
                "--interval",
                &INTERVAL_SECS.to_string(),
                "--listen",
                LISTEN,
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start watch"),
    )
}

kernel_test! {
    fn watch_serves_valid_growing_metrics_that_match_proc() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("watch.jsonl");
        let mut child = start_watch(&["--flow-sample", "1", "--jsonl", jsonl.to_str().unwrap()]);
        let first = fresh_scrape(0.0);
        let s1 = fresh_scrape(last_update(&first));
        let a = proc_net_rx();
        let t_a = now();
        let pair = NetnsPair::new("watch");
        let mut scrapes = vec![s1];
        let start = Instant::now();
        let mut port = 5600;
        while start.elapsed() < Duration::from_secs(28) {
            tcp_flow(&pair, false, port, "irqt-watch", 1);
            port += 1;
            if scrapes.len() == 1 && start.elapsed() > Duration::from_secs(10) {
                scrapes.push(scrape().expect("scrape during traffic"));
            }
        }
        // Quiet but for scrapes polled as fresh_scrape polls (its NET_RX rate measured), then
        // a scrape published after /proc is read.
        let (q, t_q) = (proc_net_rx(), now());
        let mut polls = 0u64;
        while now() - t_q < 1.5 {
            let _ = scrape();
            polls += 1;
            std::thread::sleep(POLL);
        }
        let b = proc_net_rx();
        let t_b = now();
        scrapes.push(fresh_scrape(t_b));
        assert_eq!(scrapes.len(), 3);

        for (i, s) in scrapes.iter().enumerate() {
            let path = dir.path().join(format!("scrape{i}.prom"));
            std::fs::write(&path, s).unwrap();
            let out = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(std::fs::File::open(&path).unwrap())
                .output()
                .expect("promtool (cargo xtask setup installs it)");
            assert!(
                out.status.success(),
                "scrape {i}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // Counters (and histogram buckets, sums, counts) only grow.
        let ty = types(&scrapes[2]);
        let monotonic = |k: &str| {
            let name = k.split('{').next().unwrap();
            ty.get(name).is_some_and(|t| t == "counter")
                || ["_bucket", "_sum", "_count"].iter().any(|s| {
                    name.strip_suffix(s)
                        .is_some_and(|f| ty.get(f).is_some_and(|t| t == "histogram"))
                })
        };
        for w in scrapes.windows(2) {
            let (old, new) = (samples(&w[0]), samples(&w[1]));
            let mut checked = 0;
            for (k, v) in &old {
                if monotonic(k) {
                    if let Some(n) = new.get(k) {
                        assert!(n >= v, "{k} went from {v} to {n}");
                        checked += 1;
                    }
                }
            }
            assert!(checked > 50, "compared {checked} counter series");
        }

        // A healthy host under traffic loses nothing: every loss series is zero, and the
        // family is there (with its kinds) to say so. Entries created and unmatched exits
        // are other families.
        for (i, s) in scrapes.iter().enumerate() {
            let losses: Vec<(String, f64)> = samples(s)
                .into_iter()
                .filter(|(k, _)| k.starts_with("irqtune_probe_losses_total{"))
                .collect();
            assert!(losses.len() >= 5, "scrape {i}: loss kinds {losses:?}");
            let lost: Vec<_> = losses.iter().filter(|(_, v)| *v != 0.0).collect();
            assert!(lost.is_empty(), "scrape {i}: losses on a healthy host: {lost:?}");
            assert!(
                !losses.iter().any(|(k, _)| k.contains("created") || k.contains("without_entry")),
                "scrape {i}: not losses: {losses:?}"
            );
        }

        // NET_RX runs per CPU: the watch's totals (read from /proc/softirqs at its ticks)
        // against /proc/softirqs read here. The two windows differ at each end by the time
        // between our read and the watch's: measured up to its publication, plus at most one
        // interval from its read to its publication. Both ends fall in quiet but for this
        // test's own scrapes (loopback TCP: NET_RX runs on whichever CPU the test is on), so
        // they can differ by the runs the measured quiet brings in that time, in bursts of
        // one scrape's runs, bounded at probability 1e-4.
        let (m1, m3) = (net_rx(&scrapes[0]), net_rx(&scrapes[2]));
        let gap_ns = nanos(Duration::from_secs_f64(
            (t_a - last_update(&scrapes[0])).max(0.0)
                + (last_update(&scrapes[2]) - t_b).max(0.0)
                + 2.0 * INTERVAL_SECS as f64,
        ));
        let quiet_ns = nanos(Duration::from_secs_f64(t_b - t_q));
        let quiet: f64 = b
            .iter()
            .map(|(cpu, v)| (v - q.get(cpu).copied().unwrap_or(0.0)).max(0.0))
            .sum();
        let burst = (quiet / polls.max(1) as f64).ceil() as u64;
        let allowed = |_cpu: &u32| arrivals_within(quiet as u64, quiet_ns, gap_ns, burst);
        let mut allowed_total = 0;
        let mut total_w = 0.0;
        let mut total_p = 0.0;
        for (cpu, p_b) in &b {
            let dp = p_b - a[cpu];
            let dw = m3.get(cpu).copied().unwrap_or(0.0) - m1.get(cpu).copied().unwrap_or(0.0);
            total_w += dw;
            total_p += dp;
            let allow = allowed(cpu);
            allowed_total += allow;
            assert!(
                (dw as u64).abs_diff(dp as u64) <= allow,
                "CPU {cpu}: watch {dw} vs /proc/softirqs {dp}, more apart than the {allow} runs \
                 quiet brings in the {gap_ns} ns between the reads"
            );
        }
        eprintln!(
            "NET_RX runs over the traffic window: watch {total_w}, /proc/softirqs {total_p}; \
             {quiet} quiet runs in {quiet_ns} ns ({polls} scrapes), {gap_ns} ns between the \
             reads: at most {allowed_total} apart"
        );
        // The per-vector histogram (no cpu label by default) holds the same runs as the per-CPU
        // counters of the same scrape.
        let hist_runs: f64 = samples(&scrapes[2])
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("irqtune_softirq_handler_seconds_count{")
                    && k.contains("vector=\"NET_RX\"")
            })
            .inspect(|(k, _)| assert!(!k.contains("cpu="), "a cpu label by default: {k}"))
            .map(|(_, v)| v)
            .sum();
        assert!(total_p > 5000.0, "traffic made NET_RX: {total_p}");
        assert!(
            (total_w as u64).abs_diff(total_p as u64) <= allowed_total,
            "NET_RX total: watch {total_w} vs /proc {total_p}, more than {allowed_total} apart"
        );

        // SIGTERM: exit 0 within 2 s, nothing left loaded.
        let t = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "watch still running 2 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status}");
        let left = irqtune_programs_loaded();
        assert!(left.is_empty(), "still loaded after watch exited: {left:?}");
        let lines = std::fs::read_to_string(&jsonl).unwrap();
        assert!(lines.lines().count() >= 20, "one JSON line per interval");
        // The per-vector histogram held the same runs as the per-CPU counters of the same
        // scrape, less the runs of intervals whose slices saw no NET_RX on any CPU: /proc's
        // runs with no time to put in the histogram (each interval's JSON line has both; read
        // now, as the watch writes a line after publishing its scrape).
        let untimed: f64 = lines
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
            .filter(|v| v["unix_ms"].as_f64() <= Some(last_update(&scrapes[2]) * 1e3))
            .flat_map(|v| v["softirqs"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["vector"] == "NET_RX")
            .map(|r| r["count"].as_f64().unwrap() - r["handler"]["count"].as_f64().unwrap())
            .sum();
        eprintln!("NET_RX histogram: {hist_runs} runs, {untimed} untimed");
        assert_eq!(
            hist_runs,
            m3.values().sum::<f64>() - untimed,
            "NET_RX runs: histogram vs per-CPU counters, {untimed} untimed"
        );
    }
}

/// Makes `connections` loopback TCP connections that each deliver one byte to a new accepted
/// socket (a new flow for the probes). Bounded at 120 s.
fn churn_sockets(connections: usize) {
    use std::net::TcpListener;
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let acceptor = std::thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut s, _)) = server.accept() else {
                break;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut [0u8; 1]);
        }
    });
    let start = Instant::now();
    for i in 0..connections {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{i} of {connections} connections in 120 s"
        );
        let mut c = TcpStream::connect(addr).expect("loopback connect");
        c.write_all(b"x").unwrap();
    }
    acceptor.join().unwrap();
}

kernel_test! {
    /// More sockets than the flow map holds: the watch counts the LRU's evictions, also when
    /// they happen intervals after the map filled (each interval's share is the growth of
    /// created-minus-present, not what it created minus what is present). Each connection
    /// is one socket that receives (the accepted one), so at least the sockets beyond the
    /// map's size were evicted, and no more than were created.
    fn watch_counts_flow_evictions_when_sockets_outnumber_its_map() {
        let mut child = start_watch(&["--duty", "100", "--flow-sample", "1"]);
        let first = fresh_scrape(0.0);
        let before = fresh_scrape(last_update(&first));
        let metric = |text: &str, name: &str| samples(text).get(name).copied().unwrap_or(f64::NAN);
        const EVICTIONS: &str = "irqtune_probe_losses_total{kind=\"flow_evictions\"}";
        const CREATED: &str = "irqtune_probe_map_entries_created_total{kind=\"flows_created\"}";
        assert_eq!(metric(&before, EVICTIONS), 0.0, "evictions before the churn");

        let map = irq_ebpf::MAX_FLOWS as f64;
        let mut made = 0;
        // Past the map's size, then (after a published interval) as many again.
        for n in [irq_ebpf::MAX_FLOWS as usize + 1000, 4000] {
            churn_sockets(n);
            made += n;
            let after = fresh_scrape(now());
            let (evicted, created) = (metric(&after, EVICTIONS), metric(&after, CREATED));
            eprintln!("{made} connections: {created} flows created, {evicted} evicted (map of {map})");
            assert!(created >= made as f64, "flows created: {created}");
            assert!(
                evicted >= created - map && evicted <= created,
                "{evicted} evictions of {created} flows created in a map of {map}"
            );
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
        assert!(child.0.wait().unwrap().success());
    }
}

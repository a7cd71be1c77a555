//! `record` on real load, then every report format checked by its real consumer:
//! promtool, headless Chromium, the hdrhistogram log reader, a JSON Schema validator.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hdrhistogram::serialization::{
    interval_log::{IntervalLogIterator, LogEntry},
    Deserializer,
};
use irqtune_tests::{direct_io, irqtune_bin, kernel_test, tcp_flow, NetnsPair};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tool(name: &str) -> PathBuf {
    let out = run(Command::new("sh").args(["-c", &format!("command -v {name}")]));
    assert!(
        out.status.success(),
        "{name} is not installed: `cargo xtask setup` installs it"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profile.schema.json")
}

/// Records `secs` with TCP between two namespaces and O_DIRECT disk I/O going on.
fn record_under_load(dir: &Path, secs: u64) -> PathBuf {
    let profile = dir.join("profile.json");
    let pair = NetnsPair::new("rep");
    let rec = Command::new(irqtune_bin())
        .args(["record", "--duration", &secs.to_string(), "--output"])
        .arg(&profile)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start irqtune record");
    std::thread::sleep(Duration::from_millis(800));
    let io = std::thread::spawn(|| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            direct_io(Path::new("/var/tmp"), 200);
        }
    });
    tcp_flow(&pair, false, 5501, "irqt-report", 1);
    io.join().expect("disk I/O");
    let out = rec.wait_with_output().expect("record");
    ok(&out, "irqtune record");
    profile
}

fn report(profile: &Path, format: &str, out: &Path) {
    ok(
        &run(Command::new(irqtune_bin())
            .args(["report", "--format", format, "--output"])
            .arg(out)
            .arg(profile)),
        &format!("report --format {format}"),
    );
}

/// Loads `page` in headless Chromium: console messages and a screenshot.
fn chromium(page: &Path, png: &Path) -> (Vec<String>, Output) {
    let out = run(Command::new(tool("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1400",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display())));
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (console, out)
}

/// Share of pixels that differ from the top-left one (the background).
fn ink(png: &Path) -> f64 {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let px = info.color_type.samples();
    let data = &buf[..info.buffer_size()];
    let bg = &data[..px];
    let differ = data.chunks(px).filter(|p| p != &bg).count();
    differ as f64 / (data.len() / px) as f64
}

kernel_test! {
    fn every_format_passes_its_consumer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile_path = record_under_load(dir.path(), 3);
        let profile = irq_user::system::files::load_profile(&profile_path).expect("valid profile");
        assert!(
            profile
                .softirqs
                .iter()
                .any(|r| r.vector == irq_user::model::profile::Vector::NetRx && r.count > 100),
            "NET_RX recorded"
        );
        assert!(
            profile.hardirqs.iter().any(|r| r.name.contains("-req")),
            "disk IRQ recorded"
        );
        assert!(
            profile.flows.iter().any(|f| f.comm == "irqt-report"),
            "the test's flow recorded"
        );

        // JSON Schema: the committed schema accepts the profile, and rejects a broken one.
        let validate = |instance: &Path| {
            run(Command::new("python3")
                .args(["-m", "jsonschema", "-i"])
                .arg(instance)
                .arg(schema()))
        };
        ok(&validate(&profile_path), "jsonschema on the profile");
        let broken = dir.path().join("broken.json");
        let text = std::fs::read_to_string(&profile_path).unwrap();
        std::fs::write(
            &broken,
            text.replacen("\"hardirqs\": [", "\"hardirqs\": 7, \"x\": [", 1),
        )
        .unwrap();
        assert!(
            !validate(&broken).status.success(),
            "the validator rejects a broken profile"
        );

        // Prometheus: promtool.
        let prom = dir.path().join("profile.prom");
        report(&profile_path, "prometheus", &prom);
        let check = run(Command::new(tool("promtool"))
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&prom).unwrap()));
        ok(&check, "promtool check metrics");

        // HTML: loads in Chromium without console errors, and the screenshot is not blank.
        let html = dir.path().join("profile.html");
        report(&profile_path, "html", &html);
        let shot = dir.path().join("shot.png");
        let (console, out) = chromium(&html, &shot);
        ok(&out, "chromium");
        assert!(console.is_empty(), "console messages: {console:?}");
        let ink_share = ink(&shot);
        assert!(
            ink_share > 0.02,
            "screenshot is blank ({:.3}% ink)",
            ink_share * 100.0
        );
        // The console check can fail: a page with a script error is caught.
        let bad = dir.path().join("bad.html");
        std::fs::write(
            &bad,
            "<html><body><script>undefined_fn();</script>x</body></html>",
        )
        .unwrap();
        let (console, _) = chromium(&bad, &dir.path().join("bad.png"));
        assert!(!console.is_empty(), "a script error shows on the console");

        // HdrHistogram log: every series decodes with the hdrhistogram reader, counts intact.
        let hlog = dir.path().join("profile.hlog");
        report(&profile_path, "hdrlog", &hlog);
        let data = std::fs::read(&hlog).unwrap();
        let mut de = Deserializer::new();
        let mut total = 0;
        for e in IntervalLogIterator::new(&data) {
            if let LogEntry::Interval(h) = e.expect("log entry") {
                let bytes = BASE64
                    .decode(h.encoded_histogram())
                    .expect("base64 histogram");
                let hist: hdrhistogram::Histogram<u64> =
                    de.deserialize(&mut bytes.as_slice()).expect("decode");
                total += hist.len();
            }
        }
        let want: u64 = profile
            .irqs
            .iter()
            .map(|r| r.handler.count())
            .sum::<u64>()
            + profile
                .softirqs
                .iter()
                .map(|r| r.handler.count() + r.raise_delay.count())
                .sum::<u64>()
            + profile.flow_totals.delivery_to_read.count();
        assert!(
            profile.flow_totals.delivery_to_read.count() > 0,
            "the TCP flow's wake-ups were recorded"
        );
        assert_eq!(total, want);

        // CSV and text render too.
        report(&profile_path, "csv", &dir.path().join("profile.csv"));
        report(&profile_path, "text", &dir.path().join("profile.txt"));
    }
}

kernel_test! {
    fn sigint_after_one_second_still_writes_a_valid_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        let child = Command::new(irqtune_bin())
            .args(["record", "--duration", "60", "--output"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start record");
        std::thread::sleep(Duration::from_secs(1));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().expect("record exits");
        ok(&out, "record after SIGINT");
        let p = irq_user::system::files::load_profile(&path).expect("a valid profile after SIGINT");
        assert!(p.session.interrupted, "marked as stopped early");
        assert!(
            p.duration_secs() < 5.0,
            "covers the time recorded, not 60 s: {}",
            p.duration_secs()
        );
        ok(
            &run(Command::new("python3")
                .args(["-m", "jsonschema", "-i"])
                .arg(&path)
                .arg(schema())),
            "jsonschema",
        );
    }
}

//! The fuzz targets' bodies: every parser of input from outside irqtune, fed arbitrary bytes.
//! `fuzz/` (cargo-fuzz, `cargo xtask fuzz`) calls them with generated inputs; the corpus under
//! `fuzz/corpus/TARGET/` is replayed by an ordinary test (`irq-user/tests/fuzz_corpus.rs`), so
//! every input that once found a bug stays a test. A target passes when its parser returns,
//! with a value or an error: never a panic, an abort or a hang.

use std::path::Path;

use irq_user::{
    analysis::plan::Plan,
    model::{cpulist, procfs, profile::Profile},
    render::{self, Format},
    system::journal::Journal,
};

/// A fuzz target's body: any bytes in, no panic out.
pub type Target = fn(&[u8]);

/// The targets, by name (the directory names of the corpus and of `fuzz/fuzz_targets`).
pub const TARGETS: [(&str, Target); 8] = [
    ("interrupts", interrupts),
    ("softirqs", softirqs),
    ("softnet", softnet),
    ("cpulist", cpulist_target),
    ("cpumask", cpumask),
    ("profile", profile),
    ("plan", plan),
    ("journal", journal),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

pub fn interrupts(data: &[u8]) {
    if let Ok(i) = procfs::parse_interrupts(data, Path::new("interrupts")) {
        // What the machine model makes of it, too.
        let _ =
            irq_user::model::machine::Machine::from_interrupts(&irq_user::model::tree::Empty, &i);
    }
}

pub fn softirqs(data: &[u8]) {
    let _ = procfs::parse_softirqs(data, Path::new("softirqs"));
}

pub fn softnet(data: &[u8]) {
    let _ = procfs::parse_softnet(data, Path::new("softnet_stat"));
}

pub fn cpulist_target(data: &[u8]) {
    if let Ok(c) = cpulist::parse(&text(data)) {
        let _ = cpulist::format(&c);
        let _ = cpulist::format_mask(&c, 8192);
    }
}

pub fn cpumask(data: &[u8]) {
    if let Ok(c) = cpulist::parse_mask(&text(data)) {
        let _ = cpulist::format_mask(&c, c.len() as u32);
    }
}

/// A profile, then every report format of it.
pub fn profile(data: &[u8]) {
    if let Ok(p) = Profile::parse(&text(data), "profile") {
        for f in [
            Format::Text,
            Format::Json,
            Format::Csv,
            Format::Html,
            Format::Prometheus,
            Format::Hdrlog,
        ] {
            let _ = render::render(&p, f, render::Options::default());
        }
        let _ = irq_user::analysis::findings::find(&p);
    }
}

pub fn plan(data: &[u8]) {
    let cpus: Vec<u32> = (0..64).collect();
    if let Ok(p) = Plan::parse(&text(data), "plan", &cpus, &cpus) {
        let _ = p.diff();
        let _ = p.to_json();
    }
}

pub fn journal(data: &[u8]) {
    if let Ok(j) = serde_json::from_str::<Journal>(&text(data)) {
        let _ = j.check(
            &irq_user::system::sysroot::SysRoot::new("/nonexistent-irqtune-fuzz"),
            &j.host,
        );
    }
}

//! `watch`: continuous, low-overhead; a Prometheus exporter.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use irq_user::{
    render::prometheus,
    system::privileges,
    system::probes::{Group, ProbeOptions},
    system::session::{Duty, Recorder, Waited},
    system::stop::Stop,
    system::watch::{
        http::{self, Published},
        jsonl::JsonlWriter,
        Watcher,
    },
};

/// 9810: not in the Prometheus default port allocations list as taken at the time of writing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";

/// `watch`'s duty cycle by default, percent of each interval: what it costs a small-packet
/// workload is in BENCHMARKS.md (the target: at most 3%, below the libbpf-tools pair).
pub const DEFAULT_DUTY: u32 = 10;

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Seconds between reads of the probes' maps (and updates of /metrics).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    interval: u64,
    /// Where /metrics is served.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Also append one JSON line per interval to this file.
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
    /// Size cap of the JSON lines file in MiB; past it the file rotates to FILE.1.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    jsonl_max_mib: u64,
    /// Percent of each interval the probes are attached (a duty cycle: on at the start of
    /// every interval for this share of it). Counts /proc keeps exactly stay exact, the rest
    /// is extrapolated (irqtune_probe_coverage_ratio says how much was seen); 100 attaches
    /// them throughout, at the full per-event cost.
    #[arg(long, default_value_t = DEFAULT_DUTY, value_parser = clap::value_parser!(u32).range(1..=100))]
    duty: u32,
    /// Track one socket in N.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    flow_sample: u32,
    /// Do not track flows.
    #[arg(long)]
    no_flows: bool,
    /// Histograms per softirq vector and CPU and per IRQ and CPU, not only per vector and per
    /// IRQ. Series grow as CPUs x vectors x buckets (7,971 for a 64-CPU server instead of
    /// about 1,300): for one host under study, not for a fleet.
    #[arg(long)]
    per_cpu_histograms: bool,
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let stop = Stop::on_signals().context("installing the signal handlers")?;
    // Bind first: a taken port is an error before anything is loaded.
    let listener = std::net::TcpListener::bind(args.listen).with_context(|| {
        format!(
            "cannot listen on {} (in use? pick another with --listen)",
            args.listen
        )
    })?;
    listener
        .set_nonblocking(true)
        .context("setting the listener non-blocking")?;
    raise_fd_limit();
    let mut jsonl = match &args.jsonl {
        Some(p) => Some(
            JsonlWriter::open(p, args.jsonl_max_mib * 1024 * 1024)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    let interval = Duration::from_secs(args.interval);
    let recorder = start_probes(&args, interval)?;
    let mut watcher = Watcher::new(
        recorder,
        prometheus::Options {
            per_cpu_histograms: args.per_cpu_histograms,
        },
    )?;
    let published = Published::default();
    let publish = |watcher: &mut Watcher, jsonl: &mut Option<JsonlWriter>| -> anyhow::Result<()> {
        let (text, record) = watcher.tick()?;
        *published
            .text
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = text;
        if let Some(w) = jsonl {
            w.write(&record).context("writing the JSON lines file")?;
        }
        Ok(())
    };
    publish(&mut watcher, &mut jsonl)?;
    let (quit_tx, quit_rx) = tokio::sync::oneshot::channel::<()>();
    let server = spawn_server(listener, published.clone(), quit_rx)?;
    super::err(&format!(
        "irqtune watch: metrics on http://{}/metrics, every {} s; Ctrl-C or SIGTERM stops\n",
        args.listen, args.interval
    ));
    loop {
        // The probes are attached for the duty cycle's share of the interval, then read.
        if watcher.wait(interval, &stop).await == Waited::Stopped {
            break;
        }
        if let Err(e) = publish(&mut watcher, &mut jsonl) {
            log::warn!("interval skipped: {e:#}");
        }
    }
    if let Some(w) = &mut jsonl {
        w.flush().context("flushing the JSON lines file")?;
    }
    let _ = quit_tx.send(());
    let _ = server.join();
    drop(watcher);
    Ok(())
}

/// Loads the probes with the duty cycle asked for, then drops every capability but those
/// re-attaching them takes.
fn start_probes(args: &WatchArgs, interval: Duration) -> anyhow::Result<Recorder> {
    let opts = ProbeOptions {
        skip: if args.no_flows {
            vec![Group::Flows]
        } else {
            Vec::new()
        },
        flow_sample: args.flow_sample,
        ..ProbeOptions::default()
    };
    let recorder = Recorder::with_duty(&opts, Duty::percent(args.duty, interval))?;
    // Loaded and attached: from here on the probes need only what re-attaching them takes.
    if let Err(e) = privileges::keep_only_probe_capabilities() {
        log::warn!("could not drop capabilities: {e}");
    }
    for d in &recorder.probes.disabled {
        log::warn!(
            "{}:{} disabled: {} (irqtune_probe_attached says so too)",
            d.probe.category,
            d.probe.name,
            d.reason
        );
    }
    Ok(recorder)
}

/// Serves /metrics on its own thread and runtime: however many clients connect, the
/// interval reads of the maps on the main one are never delayed by them.
fn spawn_server(
    listener: std::net::TcpListener,
    published: Published,
    quit_rx: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("irqtune-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    log::error!("/metrics: cannot start its runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        http::serve(l, published, async {
                            let _ = quit_rx.await;
                        })
                        .await
                    }
                    Err(e) => log::error!("/metrics: {e}"),
                }
            });
        })
        .context("starting the /metrics thread")
}

/// Lets /metrics hold its connection cap: the soft limit on open files up to the hard one (a
/// systemd service starts with 1024).
fn raise_fd_limit() {
    let want = http::MAX_CONNECTIONS as u64 + 256;
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if lim.current.is_some_and(|c| c < want) {
        let new = rustix::process::Rlimit {
            current: Some(lim.maximum.map_or(want, |m| m.min(want))),
            maximum: lim.maximum,
        };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, new) {
            log::debug!("could not raise the open files limit: {e}");
        }
    }
}

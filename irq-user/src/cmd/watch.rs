//! `watch`: continuous, low-overhead; a Prometheus exporter.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use irq_user::{
    render::prometheus,
    system::probes::{Group, ProbeOptions},
    system::session::Recorder,
    system::stop::Stop,
    system::watch::{
        http::{router, Published},
        jsonl::JsonlWriter,
        Watcher,
    },
};

/// 9810: not in the Prometheus default port allocations list as taken at the time of writing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9810";

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
    /// Track one socket in N (flows are the dearest probes).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
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
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (in use? pick another with --listen)",
                args.listen
            )
        })?;
    let mut jsonl = match &args.jsonl {
        Some(p) => Some(
            JsonlWriter::open(p, args.jsonl_max_mib * 1024 * 1024)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    let opts = ProbeOptions {
        skip: if args.no_flows {
            vec![Group::Flows]
        } else {
            Vec::new()
        },
        flow_sample: args.flow_sample,
        ..ProbeOptions::default()
    };
    let recorder = Recorder::start(&opts)?;
    for d in &recorder.probes.disabled {
        log::warn!(
            "{}:{} disabled: {} (irqtune_probe_attached says so too)",
            d.probe.category,
            d.probe.name,
            d.reason
        );
    }
    let mut watcher = Watcher::new(
        recorder,
        prometheus::Options {
            per_cpu_histograms: args.per_cpu_histograms,
        },
    )?;
    let published = Published::default();
    let publish = |watcher: &mut Watcher, jsonl: &mut Option<JsonlWriter>| -> anyhow::Result<()> {
        let (text, record) = watcher.tick()?;
        *published.text.write().expect("not poisoned") = text;
        if let Some(w) = jsonl {
            w.write(&record).context("writing the JSON lines file")?;
        }
        Ok(())
    };
    publish(&mut watcher, &mut jsonl)?;
    let (quit_tx, quit_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(published.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = quit_rx.await;
            })
            .await
    });
    eprintln!(
        "irqtune watch: metrics on http://{}/metrics, every {} s; Ctrl-C or SIGTERM stops",
        args.listen, args.interval
    );
    let mut tick = tokio::time::interval(Duration::from_secs(args.interval));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            _ = tick.tick() => {
                if let Err(e) = publish(&mut watcher, &mut jsonl) {
                    log::warn!("interval skipped: {e:#}");
                }
            }
        }
    }
    if let Some(w) = &mut jsonl {
        w.flush().context("flushing the JSON lines file")?;
    }
    let _ = quit_tx.send(());
    let _ = tokio::time::timeout(Duration::from_millis(300), server).await;
    drop(watcher);
    Ok(())
}

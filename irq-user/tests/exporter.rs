//! The /metrics server under hostile clients: 1,000 idle connections and a slow-loris client
//! trickling its headers must not stop Prometheus's scrapes, nor grow the process without
//! bound. The server runs as `watch` runs it: on its own thread and runtime, on loopback.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use irq_user::system::watch::http::{self, Published};

/// Resident set size of this process, KiB (procfs, as `ps` reads it).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Room for both ends of every connection in this one process.
fn raise_fd_limit(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let max = lim.maximum.unwrap_or(u64::MAX);
    assert!(
        max >= want,
        "the hard limit on open files ({max}) is below {want}"
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        },
    )
    .expect("raise the open files limit");
}

fn start_server(text: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("address");
    let published = Published::default();
    *published.text.write().expect("lock") = text.to_string();
    let (quit_tx, quit_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            http::serve(l, published, async {
                let _ = quit_rx.await;
            })
            .await;
        });
    });
    (addr, quit_tx)
}

/// One scrape: its status line, within `deadline`.
fn scrape(addr: SocketAddr, deadline: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, deadline).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(deadline))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn scrapes_answer_through_idle_connections_and_a_slow_loris() {
    raise_fd_limit(4096);
    let body = "# HELP irqtune_x x\n# TYPE irqtune_x gauge\nirqtune_x 1\n";
    let (addr, quit) = start_server(body);
    assert!(scrape(addr, Duration::from_secs(2))
        .expect("a first scrape")
        .contains("irqtune_x 1"));
    let rss_before = rss_kib();

    // 1,000 clients that connect and say nothing.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).expect("idle connection"))
        .collect();
    // A slow loris: a header line a byte every 200 ms, never finishing the request.
    let loris = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("loris connects");
        let start = Instant::now();
        let mut sent = 0usize;
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 64].iter())
        {
            if start.elapsed() > Duration::from_secs(12) || s.write_all(&[*b]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (sent, start.elapsed())
    });

    // Scrapes keep answering, each within 2 s, while all that is open.
    for i in 0..10 {
        let t = Instant::now();
        let r = scrape(addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("scrape {i} with 1,000 idle clients: {e}"));
        assert!(r.starts_with("HTTP/1.1 200"), "scrape {i}: {r}");
        assert!(r.contains("irqtune_x 1"), "scrape {i}: {r}");
        assert!(t.elapsed() < Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(300));
    }
    let rss_during = rss_kib();

    // The loris is cut off at the header timeout, not served and not kept.
    let (sent, held) = loris.join().expect("loris thread");
    assert!(
        held < http::HEADER_TIMEOUT + Duration::from_secs(3),
        "the slow client held its connection {held:?} ({sent} bytes sent)"
    );
    // Idle clients are closed by the server at the header timeout too.
    let mut closed = 0;
    for mut s in idle.into_iter().take(50) {
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        if matches!(s.read(&mut buf), Ok(0)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "idle connections closed by the server");

    // Memory: a thousand tasks with their buffers, bounded: 1,000 connections of at most
    // MAX_REQUEST of buffers each and a task is under 16 MiB; the margin is the allocator's.
    let grew = rss_during.saturating_sub(rss_before);
    eprintln!(
        "RSS {rss_before} KiB before, {rss_during} KiB with 1,000 idle clients (+{grew} KiB)"
    );
    assert!(
        grew < 32 * 1024,
        "RSS grew {grew} KiB with 1,000 idle connections"
    );
    let _ = quit.send(());
}

#[test]
fn only_get_of_the_metrics_and_the_root_is_answered() {
    let (addr, quit) = start_server("irqtune_x 1\n");
    let ask = |req: &str| {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        s.write_all(req.as_bytes()).expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let close = "Host: x\r\nConnection: close\r\n\r\n";
    assert!(ask(&format!("GET / HTTP/1.1\r\n{close}")).starts_with("HTTP/1.1 200"));
    assert!(ask(&format!("GET /metrics HTTP/1.1\r\n{close}")).starts_with("HTTP/1.1 200"));
    assert!(ask(&format!("GET /etc/passwd HTTP/1.1\r\n{close}")).starts_with("HTTP/1.1 404"));
    assert!(ask(&format!(
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n{close}"
    ))
    .starts_with("HTTP/1.1 405"));
    // Headers past the request cap are refused, not buffered.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n{close}",
        "a".repeat(64 * 1024)
    );
    let r = ask(&huge);
    assert!(
        r.is_empty() || r.starts_with("HTTP/1.1 431") || r.starts_with("HTTP/1.1 400"),
        "{r}"
    );
    let _ = quit.send(());
}

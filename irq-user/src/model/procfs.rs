//! Parsers for the /proc files irqtune reads. Each takes a reader, so tests feed them samples
//! copied from real machines; the `read_*` functions open the live file under a root.

use crate::model::tree::Tree;
use std::{
    io::BufRead,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {what}")]
    Parse {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

/// One row of /proc/interrupts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptRow {
    /// The first column without its colon: "36", "NMI", "LOC".
    pub id: String,
    /// The IRQ number for numeric rows.
    pub irq: Option<u32>,
    /// Count per CPU column (`Interrupts::cpus`); rows such as ERR have fewer columns.
    pub counts: Vec<u64>,
    /// Interrupt controller ("IO-APIC", "PCI-MSIX-0000:00:02.0"), numeric rows only.
    pub chip: String,
    /// The handlers' names ("virtio1-req.0", "eth0-TxRx-3") or, for architecture rows, the
    /// description ("Local timer interrupts").
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interrupts {
    /// CPU numbers of the columns (offline CPUs have no column).
    pub cpus: Vec<u32>,
    pub rows: Vec<InterruptRow>,
}

impl Interrupts {
    pub fn row(&self, irq: u32) -> Option<&InterruptRow> {
        self.rows.iter().find(|r| r.irq == Some(irq))
    }

    /// Count of `irq` on `cpu`, 0 if absent.
    pub fn count(&self, irq: u32, cpu: u32) -> u64 {
        let col = self.cpus.iter().position(|&c| c == cpu);
        match (self.row(irq), col) {
            (Some(r), Some(col)) => r.counts.get(col).copied().unwrap_or(0),
            _ => 0,
        }
    }
}

fn parse_cpu_header(line: &str, path: &Path) -> Result<Vec<u32>, ProcError> {
    line.split_whitespace()
        .map(|c| {
            c.strip_prefix("CPU")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| ProcError::Parse {
                    path: path.to_path_buf(),
                    line: 1,
                    what: format!("expected a CPU column header, found {c:?}"),
                })
        })
        .collect()
}

/// `hwirq-type` columns as printed by kernels since 4.x ("5-edge", "524288-edge") or alone.
fn is_hwirq_or_type(token: &str) -> bool {
    let t = token.split('-').next().unwrap_or("");
    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        || matches!(token, "edge" | "level" | "fasteoi" | "simple")
}

/// A /proc table of per-CPU counts: the CPU header, then "KEY: rest" lines (1-based line
/// numbers kept for errors).
struct CpuTable {
    cpus: Vec<u32>,
    rows: Vec<(usize, String, String)>,
}

fn read_cpu_table(reader: impl BufRead, path: &Path) -> Result<CpuTable, ProcError> {
    let io = |source| ProcError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut lines = reader.lines();
    let header = lines.next().transpose().map_err(io)?.unwrap_or_default();
    let cpus = parse_cpu_header(&header, path)?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, rest)) = line.split_once(':') else {
            return Err(ProcError::Parse {
                path: path.to_path_buf(),
                line: i + 2,
                what: "no ':' after the first column".into(),
            });
        };
        rows.push((i + 2, key.trim().to_string(), rest.to_string()));
    }
    Ok(CpuTable { cpus, rows })
}

/// Parses /proc/interrupts. `path` only names the file in errors.
pub fn parse_interrupts(reader: impl BufRead, path: &Path) -> Result<Interrupts, ProcError> {
    let table = read_cpu_table(reader, path)?;
    let cpus = table.cpus;
    let mut rows = Vec::new();
    for (_, id, rest) in table.rows {
        let irq = id.parse().ok();
        let mut tokens = rest.split_whitespace().peekable();
        let mut counts = Vec::with_capacity(cpus.len());
        while counts.len() < cpus.len() {
            match tokens.peek().and_then(|t| t.parse::<u64>().ok()) {
                Some(n) => {
                    counts.push(n);
                    tokens.next();
                }
                None => break,
            }
        }
        let tail: Vec<&str> = tokens.collect();
        let (chip, name) = if irq.is_some() && !tail.is_empty() {
            let mut skip = 1;
            if tail.get(1).is_some_and(|t| is_hwirq_or_type(t)) {
                skip = 2;
            }
            (
                tail[0].to_string(),
                tail.get(skip..).unwrap_or_default().join(" "),
            )
        } else {
            (String::new(), tail.join(" "))
        };
        rows.push(InterruptRow {
            id,
            irq,
            counts,
            chip,
            name,
        });
    }
    Ok(Interrupts { cpus, rows })
}

/// /proc/softirqs: count per (vector name, CPU column).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Softirqs {
    pub cpus: Vec<u32>,
    pub rows: Vec<(String, Vec<u64>)>,
}

impl Softirqs {
    pub fn count(&self, vector: &str, cpu: u32) -> u64 {
        let col = self.cpus.iter().position(|&c| c == cpu);
        self.rows
            .iter()
            .find(|(name, _)| name == vector)
            .and_then(|(_, counts)| counts.get(col?).copied())
            .unwrap_or(0)
    }
}

pub fn parse_softirqs(reader: impl BufRead, path: &Path) -> Result<Softirqs, ProcError> {
    let table = read_cpu_table(reader, path)?;
    let mut rows = Vec::new();
    for (line, name, rest) in table.rows {
        let counts = rest
            .split_whitespace()
            .map(|n| {
                n.parse::<u64>().map_err(|_| ProcError::Parse {
                    path: path.to_path_buf(),
                    line,
                    what: format!("bad count {n:?}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push((name, counts));
    }
    Ok(Softirqs {
        cpus: table.cpus,
        rows,
    })
}

/// One CPU's line of /proc/net/softnet_stat (net/core/net-procfs.c, softnet_seq_show).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct SoftnetRow {
    pub cpu: u32,
    /// Packets processed by the CPU's NET_RX.
    pub processed: u64,
    /// Packets dropped because the backlog queue was full (netdev_max_backlog).
    pub dropped: u64,
    /// NET_RX runs that ended with work left (budget or time limit: netdev_budget,
    /// netdev_budget_usecs).
    pub time_squeeze: u64,
    /// RPS inter-processor interrupts received.
    pub received_rps: u64,
    /// Packets dropped by flow limit.
    pub flow_limit_count: u64,
}

impl SoftnetRow {
    pub fn minus(&self, e: &SoftnetRow) -> SoftnetRow {
        // The kernel's counters are 32-bit and wrap.
        let d = |a: u64, b: u64| a.wrapping_sub(b) & 0xffff_ffff;
        SoftnetRow {
            cpu: self.cpu,
            processed: d(self.processed, e.processed),
            dropped: d(self.dropped, e.dropped),
            time_squeeze: d(self.time_squeeze, e.time_squeeze),
            received_rps: d(self.received_rps, e.received_rps),
            flow_limit_count: d(self.flow_limit_count, e.flow_limit_count),
        }
    }
}

/// Parses /proc/net/softnet_stat: hex columns, one line per online CPU; the CPU number is
/// column 13 since Linux 5.10, the line index before.
pub fn parse_softnet(reader: impl BufRead, path: &Path) -> Result<Vec<SoftnetRow>, ProcError> {
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| ProcError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let cols = line
            .split_whitespace()
            .map(|c| u64::from_str_radix(c, 16))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(|_| ProcError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                what: "expected hexadecimal columns".into(),
            })?;
        if cols.len() < 11 {
            return Err(ProcError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                what: format!("{} columns, expected at least 11", cols.len()),
            });
        }
        rows.push(SoftnetRow {
            cpu: cols.get(12).map_or(i as u32, |&c| c as u32),
            processed: cols[0],
            dropped: cols[1],
            time_squeeze: cols[2],
            received_rps: cols[9],
            flow_limit_count: cols[10],
        });
    }
    Ok(rows)
}

/// A NIC's receive drop counters (/sys/class/net/IFACE/statistics, the kernel's
/// rtnl_link_stats64 as every driver fills it): what the NIC or its driver dropped before
/// the stack saw the packet.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct NicCounters {
    pub device: String,
    pub rx_packets: u64,
    /// Dropped by the driver or the stack (no buffer, unknown protocol, ...).
    pub rx_dropped: u64,
    /// The NIC had no descriptor to put the packet in (the rx ring was full).
    pub rx_missed_errors: u64,
    /// The NIC's receive FIFO overflowed.
    pub rx_fifo_errors: u64,
    /// Ring buffer overflow (drivers that tell it from missed).
    pub rx_over_errors: u64,
    /// Packets sent: with the tx completion interrupts, how much each interrupt brought.
    #[serde(default)]
    pub tx_packets: u64,
}

impl NicCounters {
    /// Packets lost for want of a receive buffer: what a larger rx ring can help.
    pub fn no_buffer(&self) -> u64 {
        self.rx_missed_errors
            .saturating_add(self.rx_fifo_errors)
            .saturating_add(self.rx_over_errors)
    }

    pub fn minus(&self, e: &NicCounters) -> NicCounters {
        NicCounters {
            device: self.device.clone(),
            rx_packets: self.rx_packets.saturating_sub(e.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(e.rx_dropped),
            rx_missed_errors: self.rx_missed_errors.saturating_sub(e.rx_missed_errors),
            rx_fifo_errors: self.rx_fifo_errors.saturating_sub(e.rx_fifo_errors),
            rx_over_errors: self.rx_over_errors.saturating_sub(e.rx_over_errors),
            tx_packets: self.tx_packets.saturating_sub(e.tx_packets),
        }
    }

    pub fn add(&mut self, e: &NicCounters) {
        self.rx_packets = self.rx_packets.saturating_add(e.rx_packets);
        self.rx_dropped = self.rx_dropped.saturating_add(e.rx_dropped);
        self.rx_missed_errors = self.rx_missed_errors.saturating_add(e.rx_missed_errors);
        self.rx_fifo_errors = self.rx_fifo_errors.saturating_add(e.rx_fifo_errors);
        self.rx_over_errors = self.rx_over_errors.saturating_add(e.rx_over_errors);
        self.tx_packets = self.tx_packets.saturating_add(e.tx_packets);
    }
}

/// The drop counters of every network device but `lo` (those without statistics skipped).
pub fn read_nic_counters<T: Tree + ?Sized>(tree: &T) -> Vec<NicCounters> {
    let mut out = Vec::new();
    for device in tree.list("sys/class/net") {
        if device == "lo" {
            continue;
        }
        let stat = |name: &str| {
            tree.read_opt(&format!("sys/class/net/{device}/statistics/{name}"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let Some(rx_packets) = stat("rx_packets") else {
            continue;
        };
        out.push(NicCounters {
            rx_packets,
            rx_dropped: stat("rx_dropped").unwrap_or(0),
            rx_missed_errors: stat("rx_missed_errors").unwrap_or(0),
            rx_fifo_errors: stat("rx_fifo_errors").unwrap_or(0),
            rx_over_errors: stat("rx_over_errors").unwrap_or(0),
            tx_packets: stat("tx_packets").unwrap_or(0),
            device,
        });
    }
    out
}

/// Reads `proc/net/softnet_stat` of the tree.
pub fn read_softnet<T: Tree + ?Sized>(tree: &T) -> Result<Vec<SoftnetRow>, ProcError> {
    let (text, path) = read(tree, "proc/net/softnet_stat")?;
    parse_softnet(text.as_bytes(), &path)
}

fn read<T: Tree + ?Sized>(tree: &T, rel: &str) -> Result<(String, PathBuf), ProcError> {
    let text = tree.read(rel).map_err(|e| ProcError::Io {
        path: e.path,
        source: e.source,
    })?;
    Ok((text, tree.root().join(rel)))
}

/// Reads `proc/interrupts` of the tree.
pub fn read_interrupts<T: Tree + ?Sized>(tree: &T) -> Result<Interrupts, ProcError> {
    let (text, path) = read(tree, "proc/interrupts")?;
    parse_interrupts(text.as_bytes(), &path)
}

/// Reads `proc/softirqs` of the tree.
pub fn read_softirqs<T: Tree + ?Sized>(tree: &T) -> Result<Softirqs, ProcError> {
    let (text, path) = read(tree, "proc/softirqs")?;
    parse_softirqs(text.as_bytes(), &path)
}

/// PID of each CPU's ksoftirqd thread, from the tree's `proc/*/comm`, indexed by CPU.
pub fn ksoftirqd_pids<T: Tree + ?Sized>(tree: &T) -> Vec<(u32, u32)> {
    let mut found: Vec<(u32, u32)> = tree
        .list("proc")
        .iter()
        .filter_map(|name| {
            let pid = name.parse::<u32>().ok()?;
            let comm = tree.read_opt(&format!("proc/{pid}/comm"))?;
            let cpu = comm.trim().strip_prefix("ksoftirqd/")?.parse().ok()?;
            Some((cpu, pid))
        })
        .collect();
    found.sort();
    found
}

/// One field of a /proc/PID/status text ("Cpus_allowed_list", "PPid", ...), trimmed.
pub fn status_value<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// One field of /proc/PID/status.
pub fn status_field<T: Tree + ?Sized>(tree: &T, pid: u32, key: &str) -> Option<String> {
    let status = tree.read_opt(&format!("proc/{pid}/status"))?;
    status_value(&status, key).map(str::to_string)
}

/// The CPUs a task may run on (its `Cpus_allowed_list`).
pub fn task_cpus<T: Tree + ?Sized>(tree: &T, pid: u32) -> Option<Vec<u32>> {
    crate::model::cpulist::parse(&status_field(tree, pid, "Cpus_allowed_list")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This VM (2 CPUs, virtio devices), kernel 6.18.
    const VM: &str = "           CPU0       CPU1       
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 26:          0         15  IO-APIC   4-edge      ttyS0
 36:          0      40275 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 38:          0       3544 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
NMI:          0          0   Non-maskable interrupts
LOC:      95051     101256   Local timer interrupts
ERR:          0
MIS:          0
";

    /// From the source notes: a 4-CPU server of the 2.6 era, chip and type in one column,
    /// and a row whose columns are misaligned.
    const OLD4: &str = "            CPU0       CPU1       CPU2       CPU3
   0:         57          0          0          0   IO-APIC-edge      timer
   9:          0          0          0          0   IO-APIC-fasteoi   acpi
  61:         2346          0          0          0   PCI-MSI-edge      eth0-0
  62:          0         208711        0         0   PCI-MSI-edge      eth0-1
  63:         0          0                 0     147535          PCI-MSI-edge      eth0-2
NMI:       5077       2032       0       0
";

    #[test]
    fn parses_a_vm() {
        let i = parse_interrupts(VM.as_bytes(), Path::new("interrupts")).unwrap();
        assert_eq!(i.cpus, vec![0, 1]);
        let r = i.row(36).unwrap();
        assert_eq!(
            (r.chip.as_str(), r.name.as_str()),
            ("PCI-MSIX-0000:00:02.0", "virtio1-req.0")
        );
        assert_eq!(i.count(36, 1), 40275);
        assert_eq!(i.count(24, 0), 1);
        let loc = i.rows.iter().find(|r| r.id == "LOC").unwrap();
        assert_eq!(loc.name, "Local timer interrupts");
        assert_eq!(loc.counts, vec![95051, 101256]);
        let err = i.rows.iter().find(|r| r.id == "ERR").unwrap();
        assert_eq!(err.counts, vec![0]);
    }

    #[test]
    fn parses_old_format_with_combined_chip_and_type() {
        let i = parse_interrupts(OLD4.as_bytes(), Path::new("interrupts")).unwrap();
        assert_eq!(i.cpus, vec![0, 1, 2, 3]);
        assert_eq!(i.row(61).unwrap().name, "eth0-0");
        assert_eq!(i.row(63).unwrap().counts, vec![0, 0, 0, 147535]);
        assert_eq!(i.row(63).unwrap().chip, "PCI-MSI-edge");
        assert_eq!(i.row(0).unwrap().name, "timer");
    }

    #[test]
    fn rejects_a_bad_header_naming_the_file() {
        let err = parse_interrupts("garbage\n".as_bytes(), Path::new("/x/interrupts")).unwrap_err();
        assert!(err.to_string().contains("/x/interrupts"), "{err}");
    }

    #[test]
    fn parses_softnet_stat() {
        // This VM, kernel 6.18 (15 columns, CPU in column 13).
        let text = "00001640 00000002 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000004 00000005 00000000 00000001 00000000 00000000
";
        let rows = parse_softnet(text.as_bytes(), Path::new("softnet_stat")).unwrap();
        assert_eq!(
            rows,
            vec![SoftnetRow {
                cpu: 1,
                processed: 0x1640,
                dropped: 2,
                time_squeeze: 3,
                received_rps: 4,
                flow_limit_count: 5
            }]
        );
        // Older kernels: 11 columns, CPU by line.
        let old = "0000000a 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n0000000b 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n";
        let rows = parse_softnet(old.as_bytes(), Path::new("s")).unwrap();
        assert_eq!((rows[1].cpu, rows[1].processed), (1, 11));
        let wrapped = SoftnetRow {
            processed: 2,
            ..SoftnetRow::default()
        }
        .minus(&SoftnetRow {
            processed: 0xffff_fffe,
            ..SoftnetRow::default()
        });
        assert_eq!(wrapped.processed, 4);
        assert!(parse_softnet("zz\n".as_bytes(), Path::new("s")).is_err());
    }

    #[test]
    fn parses_softirqs() {
        let text = "                    CPU0       CPU1       
          HI:          0          0
      NET_RX:       2332       3422
       BLOCK:          0      40272
";
        let s = parse_softirqs(text.as_bytes(), Path::new("softirqs")).unwrap();
        assert_eq!(s.count("NET_RX", 1), 3422);
        assert_eq!(s.count("BLOCK", 0), 0);
        assert_eq!(s.count("NOPE", 0), 0);
        let bad = parse_softirqs("  CPU0\n NET_RX: x\n".as_bytes(), Path::new("s")).unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
    }
}

//! Loads and attaches the probes, and reads their maps into a [`Snapshot`].
//!
//! Every event irqtune observes has methods in the object, cheapest first ([`PROBES`]): a BTF
//! tracepoint, then for the flow events (whose tracepoints came in 6.3) fentry/fexit on the
//! functions around them, the classic tracepoint, kprobes, and TCP's own tracepoints as the
//! last resort. The first method whose programs all attach is kept; an event no method can
//! observe is disabled with the reasons; the rest keep working. `IRQTUNE_PROBE_METHODS`
//! (btf,fentry,classic,kprobe,tcp) limits the methods tried. Dropping [`Probes`] detaches and
//! unloads everything.

use std::collections::BTreeMap;

use aya::Ebpf;
use irq_ebpf::{CpuState, MAX_CPUS};

use crate::model::{procfs, profile::Attach};

/// The compiled probes, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/irq-probes"));

/// The embedded eBPF object (for the test that holds it to the tables here).
pub fn object() -> &'static [u8] {
    OBJECT
}

/// What a group of probes measures; groups can be switched off at load time.
pub use crate::model::profile::Family as Group;

/// How a program hooks the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// A BTF tracepoint (tp_btf) on the tracepoint of this name.
    BtfTracepoint(&'static str),
    /// A classic tracepoint category:name.
    Tracepoint(&'static str, &'static str),
    /// fentry / fexit on a kernel function (BPF trampoline).
    Fentry(&'static str),
    Fexit(&'static str),
    /// kprobe / kretprobe on a kernel function.
    Kprobe(&'static str),
    Kretprobe(&'static str),
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hook::BtfTracepoint(n) => write!(f, "tp_btf {n}"),
            Hook::Tracepoint(c, n) => write!(f, "tracepoint {c}:{n}"),
            Hook::Fentry(n) => write!(f, "fentry {n}"),
            Hook::Fexit(n) => write!(f, "fexit {n}"),
            Hook::Kprobe(n) => write!(f, "kprobe {n}"),
            Hook::Kretprobe(n) => write!(f, "kretprobe {n}"),
        }
    }
}

/// One program of a method: its name in the object and its hook. An optional program may fail
/// to attach (the kernel lacks that function) without failing the method: `limits` says what
/// is then not seen.
#[derive(Debug)]
pub struct Part {
    pub program: &'static str,
    pub hook: Hook,
    pub optional: Option<&'static str>,
}

/// The kinds of method `IRQTUNE_PROBE_METHODS` and `IRQTUNE_FLOW_METHODS` may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    Btf,
    Fentry,
    Classic,
    Kprobe,
    /// TCP's own tracepoints, the flows' last resort.
    Tcp,
}

impl MethodKind {
    pub const ALL: [MethodKind; 5] = [
        MethodKind::Btf,
        MethodKind::Fentry,
        MethodKind::Classic,
        MethodKind::Kprobe,
        MethodKind::Tcp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Btf => "btf",
            MethodKind::Fentry => "fentry",
            MethodKind::Classic => "classic",
            MethodKind::Kprobe => "kprobe",
            MethodKind::Tcp => "tcp",
        }
    }
}

impl std::str::FromStr for MethodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MethodKind::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = MethodKind::ALL.iter().map(|m| m.name()).collect();
                format!("{s:?} is not a method (methods: {})", all.join(","))
            })
    }
}

/// A way to observe a probe's event: programs that must all attach.
#[derive(Debug)]
pub struct Method {
    /// How the profile names the attachment.
    pub kind: Attach,
    /// Which kind of method allow lists name it by.
    pub method: MethodKind,
    pub parts: &'static [Part],
    /// What this method does not see, when it sees less than the tracepoint would.
    pub limits: Option<&'static str>,
}

/// One event irqtune observes, and its methods, cheapest first: a BTF tracepoint where the
/// kernel has it, then (for the flow events, whose tracepoints came in 6.3) fentry/fexit on
/// the functions around it, the classic tracepoint, kprobes, and TCP's own tracepoints.
#[derive(Debug)]
pub struct ProbeDef {
    pub category: &'static str,
    pub name: &'static str,
    pub methods: &'static [Method],
}

impl ProbeDef {
    /// Its family, from the model's one table of which tracepoint measures what.
    pub fn group(&self) -> Group {
        Group::of(self.category, self.name).expect("every probe belongs to a family")
    }

    /// Whether it runs per packet and is off unless asked for (`--per-packet`): on a host
    /// at millions of packets a second its cost is the workload's, and napi_poll and
    /// /proc/net/softnet_stat give the NET_RX load without it.
    pub fn per_packet(&self) -> bool {
        (self.category, self.name) == ("net", "netif_receive_skb")
    }

    /// The probes attached when nothing is skipped and per-packet detail is not asked for.
    pub fn by_default() -> impl Iterator<Item = &'static ProbeDef> {
        PROBES.iter().filter(|p| !p.per_packet())
    }

    /// Every program's name in the object, over all methods.
    pub fn program_names(&self) -> Vec<&'static str> {
        self.methods
            .iter()
            .flat_map(|m| m.parts.iter().map(|p| p.program))
            .collect()
    }
}

const fn part(program: &'static str, hook: Hook) -> Part {
    Part {
        program,
        hook,
        optional: None,
    }
}

/// The two methods of a tracepoint every supported kernel has.
macro_rules! tracepoint {
    ($cat:literal, $name:literal) => {
        ProbeDef {
            category: $cat,
            name: $name,
            methods: &[
                Method {
                    kind: Attach::Btf,
                    method: MethodKind::Btf,
                    parts: &[part(concat!($name, "_btf"), Hook::BtfTracepoint($name))],
                    limits: None,
                },
                Method {
                    kind: Attach::Classic,
                    method: MethodKind::Classic,
                    parts: &[part(concat!($name, "_tp"), Hook::Tracepoint($cat, $name))],
                    limits: None,
                },
            ],
        }
    };
}

/// Entry probes come before exit probes, so an exit never runs without its entry attached.
pub const PROBES: [ProbeDef; 9] = [
    tracepoint!("irq", "irq_handler_entry"),
    tracepoint!("irq", "irq_handler_exit"),
    tracepoint!("irq", "softirq_raise"),
    tracepoint!("irq", "softirq_entry"),
    tracepoint!("irq", "softirq_exit"),
    tracepoint!("napi", "napi_poll"),
    tracepoint!("net", "netif_receive_skb"),
    ProbeDef {
        category: "sock",
        name: "sk_data_ready",
        methods: &[
            Method {
                kind: Attach::Btf,
                method: MethodKind::Btf,
                parts: &[part("sk_data_ready_btf", Hook::BtfTracepoint("sk_data_ready"))],
                limits: None,
            },
            Method {
                kind: Attach::Fentry,
                method: MethodKind::Fentry,
                parts: &[part(
                    "sock_def_readable_fentry",
                    Hook::Fentry("sock_def_readable"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Classic,
                method: MethodKind::Classic,
                parts: &[part(
                    "sk_data_ready_tp",
                    Hook::Tracepoint("sock", "sk_data_ready"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Kprobe,
                method: MethodKind::Kprobe,
                parts: &[part(
                    "sock_def_readable_kprobe",
                    Hook::Kprobe("sock_def_readable"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Btf,
                method: MethodKind::Tcp,
                parts: &[part("tcp_probe_btf", Hook::BtfTracepoint("tcp_probe"))],
                limits: Some("TCP only (tcp:tcp_probe): UDP deliveries not seen"),
            },
        ],
    },
    ProbeDef {
        category: "sock",
        name: "sock_recv_length",
        methods: &[
            Method {
                kind: Attach::Btf,
                method: MethodKind::Btf,
                parts: &[part(
                    "sock_recv_length_btf",
                    Hook::BtfTracepoint("sock_recv_length"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Fentry,
                method: MethodKind::Fentry,
                parts: &[
                    part("inet_recvmsg_fexit", Hook::Fexit("inet_recvmsg")),
                    Part {
                        program: "inet6_recvmsg_fexit",
                        hook: Hook::Fexit("inet6_recvmsg"),
                        optional: Some("IPv6 reads not seen (no inet6_recvmsg)"),
                    },
                ],
                limits: None,
            },
            Method {
                kind: Attach::Classic,
                method: MethodKind::Classic,
                parts: &[part(
                    "sock_recv_length_tp",
                    Hook::Tracepoint("sock", "sock_recv_length"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Kprobe,
                method: MethodKind::Kprobe,
                parts: &[
                    part("inet_recvmsg_kprobe", Hook::Kprobe("inet_recvmsg")),
                    part("inet_recvmsg_kretprobe", Hook::Kretprobe("inet_recvmsg")),
                    Part {
                        program: "inet_recvmsg_kprobe",
                        hook: Hook::Kprobe("inet6_recvmsg"),
                        optional: Some("IPv6 reads not seen (no inet6_recvmsg)"),
                    },
                    Part {
                        program: "inet_recvmsg_kretprobe",
                        hook: Hook::Kretprobe("inet6_recvmsg"),
                        optional: Some("IPv6 reads not seen (no inet6_recvmsg)"),
                    },
                ],
                limits: None,
            },
            Method {
                kind: Attach::Btf,
                method: MethodKind::Tcp,
                parts: &[part(
                    "tcp_rcv_space_adjust_btf",
                    Hook::BtfTracepoint("tcp_rcv_space_adjust"),
                )],
                limits: Some(
                    "TCP only (tcp:tcp_rcv_space_adjust): UDP reads not seen, reads counted per segment copied, their sizes unknown",
                ),
            },
        ],
    },
];

#[derive(Debug)]
pub struct Attached {
    pub probe: &'static ProbeDef,
    pub kind: Attach,
    /// The parts that attached, in order, for detaching and attaching again (duty cycle).
    pub(crate) parts: Vec<&'static Part>,
    /// The hooks it attached to ("fexit inet_recvmsg, fexit inet6_recvmsg").
    pub via: String,
    /// What it does not see.
    pub limits: Option<String>,
    /// The programs' names in the object (for bpftool and benchmarks).
    pub programs: Vec<&'static str>,
}

#[derive(Debug)]
pub struct Disabled {
    pub probe: &'static ProbeDef,
    pub reason: String,
    /// Left off by choice (per-packet detail not asked for), not for want of a way.
    pub by_choice: bool,
}

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Record only these CPUs (None: all).
    pub cpus: Option<Vec<u32>>,
    /// Groups not to attach.
    pub skip: Vec<Group>,
    /// Track one socket in N (1: every socket).
    pub flow_sample: u32,
    /// Attach the classic tracepoints even where BTF tracepoints work.
    pub force_classic: bool,
    /// Also the per-packet probe (netif_receive_skb): bytes per device and CPU, at a cost on
    /// every packet.
    pub per_packet: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            cpus: None,
            skip: Vec::new(),
            flow_sample: 1,
            force_classic: false,
            per_packet: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read kernel BTF: {0}")]
    Btf(#[from] crate::system::btf::BtfError),
    #[error("cannot read kernel BTF for the loader: {0}")]
    AyaBtf(#[from] aya::BtfError),
    #[error("cannot load the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("map {0} missing from the eBPF object (build mismatch)")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("{0}")]
    Proc(#[from] procfs::ProcError),
    #[error("cannot read the possible CPUs: {0}")]
    PossibleCpus(std::io::Error),
    #[error("CPU {0} is above the {MAX_CPUS} CPUs the probes support")]
    CpuOutOfRange(u32),
    #[error("{0}: {1}")]
    BadMethod(String, String),
    #[error("no tracepoint could be attached:\n{0}")]
    NothingAttached(String),
    #[error("attaching a probe again failed: {0}")]
    Reattach(String),
}

mod attach;
mod duty;
mod load;
mod read;

pub use read::map_memory;

/// Loaded and attached probes. Dropping it detaches and unloads them, and waits (briefly)
/// until the kernel has released the programs, so none is listed after irqtune exits.
pub struct Probes {
    /// Always Some until dropped.
    ebpf: Option<Ebpf>,
    program_ids: Vec<u32>,
    pub attached: Vec<Attached>,
    pub disabled: Vec<Disabled>,
    /// IRQ number of each slot of the IRQ maps (slot 0: IRQs without a slot).
    slot_irqs: Vec<Option<u32>>,
    irq_names: BTreeMap<u32, String>,
    /// Each CPU's state as the probes start it (its ksoftirqd PID), put back before they
    /// attach again, so no entry timestamp from before a pause is taken for a new one.
    initial_state: Vec<CpuState>,
    /// The links of the attached parts, in attach order (empty while paused).
    links: Vec<attach::Link>,
    /// Time the probes have been attached, and since when (None: paused).
    observed_ns: u64,
    attached_since: Option<u64>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        // Closing the links and program fds detaches; the kernel then frees the programs after
        // an RCU grace period (tens of ms), so wait for that, bounded.
        self.links.clear();
        drop(self.ebpf.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        while std::time::Instant::now() < deadline {
            let still: usize = aya::programs::loaded_programs()
                .filter_map(Result::ok)
                .filter(|p| self.program_ids.contains(&p.id()))
                .count();
            if still == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        log::warn!("the kernel has not released irqtune's programs yet; they go away on their own");
    }
}

//! Loads and attaches the probes, and reads their maps into a [`Snapshot`].
//!
//! Every event irqtune observes has methods in the object, cheapest first ([`PROBES`]): a BTF
//! tracepoint, then for the flow events (whose tracepoints came in 6.3) fentry/fexit on the
//! functions around them, the classic tracepoint, kprobes, and TCP's own tracepoints as the
//! last resort. The first method whose programs all attach is kept; an event no method can
//! observe is disabled with the reasons; the rest keep working. `IRQTUNE_PROBE_METHODS`
//! (btf,fentry,classic,kprobe,tcp) limits the methods tried. Dropping [`Probes`] detaches and
//! unloads everything.

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{BtfTracePoint, FEntry, FExit, KProbe, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use irq_ebpf::{
    globals, maps, CpuState, FlowCpuCounts, FlowCpuKey, FlowInfo, FlowKey, FlowLatency, IrqStats,
    Loss, NetDevStats, SoftirqStats, MAX_CPUS, MAX_IRQ_NR, MAX_IRQ_SLOTS, NR_SOFTIRQS,
};

use crate::{
    model::procfs,
    model::profile::Attach,
    model::snapshot::{FlowSeries, IrqSeries, NetDevSeries, Snapshot},
    system::preflight::Environment,
};

/// The compiled probes, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/irq-probes"));

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

/// A way to observe a probe's event: programs that must all attach.
#[derive(Debug)]
pub struct Method {
    pub kind: Attach,
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
                    parts: &[part(concat!($name, "_btf"), Hook::BtfTracepoint($name))],
                    limits: None,
                },
                Method {
                    kind: Attach::Classic,
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
                parts: &[part("sk_data_ready_btf", Hook::BtfTracepoint("sk_data_ready"))],
                limits: None,
            },
            Method {
                kind: Attach::Fentry,
                parts: &[part(
                    "sock_def_readable_fentry",
                    Hook::Fentry("sock_def_readable"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Classic,
                parts: &[part(
                    "sk_data_ready_tp",
                    Hook::Tracepoint("sock", "sk_data_ready"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Kprobe,
                parts: &[part(
                    "sock_def_readable_kprobe",
                    Hook::Kprobe("sock_def_readable"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Btf,
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
                parts: &[part(
                    "sock_recv_length_btf",
                    Hook::BtfTracepoint("sock_recv_length"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Fentry,
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
                parts: &[part(
                    "sock_recv_length_tp",
                    Hook::Tracepoint("sock", "sock_recv_length"),
                )],
                limits: None,
            },
            Method {
                kind: Attach::Kprobe,
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
    /// Turn on the probes' own diagnostics (aya-log) and print them.
    pub kernel_log: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            cpus: None,
            skip: Vec::new(),
            flow_sample: 1,
            force_classic: false,
            kernel_log: false,
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
    #[error("{0}: {1:?} is not a method (methods: {2})")]
    BadMethod(String, String, String),
    #[error("no tracepoint could be attached:\n{0}")]
    NothingAttached(String),
}

/// Loaded and attached probes. Dropping it detaches and unloads them, and waits (briefly)
/// until the kernel has released the programs, so none is listed after irqtune exits.
pub struct Probes {
    /// Always Some until dropped.
    ebpf: Option<Ebpf>,
    program_ids: Vec<u32>,
    pub attached: Vec<Attached>,
    pub disabled: Vec<Disabled>,
    /// IRQ number of each slot of IRQ_STATS (slot 0: IRQs without a slot).
    slot_irqs: Vec<Option<u32>>,
    irq_names: BTreeMap<u32, String>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.logger = None;
        // Closing the links and program fds detaches; the kernel then frees the programs after
        // an RCU grace period (tens of ms), so wait for that, bounded.
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

fn cpu_filter(cpus: &[u32]) -> Result<[u64; MAX_CPUS / 64], LoadError> {
    let mut words = [0u64; MAX_CPUS / 64];
    for &cpu in cpus {
        if cpu as usize >= MAX_CPUS {
            return Err(LoadError::CpuOutOfRange(cpu));
        }
        words[cpu as usize / 64] |= 1 << (cpu % 64);
    }
    Ok(words)
}

impl Probes {
    pub fn load(env: &Environment, opts: &ProbeOptions) -> Result<Self, LoadError> {
        let btf = Btf::from_sys_fs()?;
        let offsets = crate::system::btf::Btf::from_file(Path::new(crate::system::btf::VMLINUX))?
            .kernel_offsets()?;

        let filter_on: u32 = opts.cpus.is_some().into();
        let filter = cpu_filter(opts.cpus.as_deref().unwrap_or_default())?;
        let flows_on: u32 = (!opts.skip.contains(&Group::Flows)).into();
        let flow_sample = opts.flow_sample.max(1);
        // Off unless asked: the level check then fails before any formatting on the rare paths
        // that log (aya_log_ebpf::macro_support::level_enabled).
        let log_level: u8 = if opts.kernel_log { 0xff } else { 0 };

        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global(globals::CPU_FILTER_ON, &filter_on, true)
            .override_global(globals::CPU_FILTER, &filter, true)
            .override_global(globals::FLOWS_ON, &flows_on, true)
            .override_global(globals::FLOW_SAMPLE, &flow_sample, true)
            .override_global(globals::OFFSETS, &offsets, true)
            .override_global("AYA_LOG_LEVEL", &log_level, false)
            .load(OBJECT)?;

        let logger = if opts.kernel_log {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(l) => Some(l),
                Err(e) => {
                    log::warn!("kernel-side log unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };

        // Each CPU's ksoftirqd PID in its own state entry, where the softirq exit looks.
        {
            let pids: BTreeMap<u32, u32> =
                procfs::ksoftirqd_pids(Path::new("/")).into_iter().collect();
            let nr = aya::util::nr_cpus().map_err(|(_, e)| LoadError::PossibleCpus(e))?;
            let states: Vec<CpuState> = (0..nr as u32)
                .map(|cpu| CpuState {
                    ksoftirqd_pid: pids.get(&cpu).copied().unwrap_or(0),
                    ..CpuState::default()
                })
                .collect();
            let err = |source| LoadError::Map {
                name: maps::CPU_STATE,
                source,
            };
            let map = ebpf
                .map_mut(maps::CPU_STATE)
                .ok_or(LoadError::MissingMap(maps::CPU_STATE))?;
            let mut state: PerCpuArray<_, CpuState> = PerCpuArray::try_from(map).map_err(err)?;
            let values = PerCpuValues::try_from(states).map_err(|e| err(e.into()))?;
            state.set(0, values, 0).map_err(err)?;
        }

        // Dense IRQ slots: per-CPU arrays indexed by slot keep hash maps off the hardirq path.
        let interrupts = procfs::read_interrupts(Path::new("/"))?;
        let mut slot_irqs = vec![None];
        let mut irq_names = BTreeMap::new();
        {
            let map = ebpf
                .map_mut(maps::IRQ_SLOTS)
                .ok_or(LoadError::MissingMap(maps::IRQ_SLOTS))?;
            let mut slots: Array<_, u32> =
                Array::try_from(map).map_err(|source| LoadError::Map {
                    name: maps::IRQ_SLOTS,
                    source,
                })?;
            for row in &interrupts.rows {
                let Some(irq) = row.irq else { continue };
                irq_names.insert(irq, row.name.clone());
                if irq >= MAX_IRQ_NR || slot_irqs.len() >= MAX_IRQ_SLOTS as usize {
                    log::warn!(
                        "IRQ {irq} ({}) has no statistics slot; counted as unmapped",
                        row.name
                    );
                    continue;
                }
                slots
                    .set(irq, slot_irqs.len() as u32 + 1, 0)
                    .map_err(|source| LoadError::Map {
                        name: maps::IRQ_SLOTS,
                        source,
                    })?;
                slot_irqs.push(Some(irq));
            }
        }

        let allowed = Allowed::from_env(opts.force_classic)?;
        let mut attached: Vec<Attached> = Vec::new();
        let mut disabled = Vec::new();
        for probe in &PROBES {
            if opts.skip.contains(&probe.group()) {
                continue;
            }
            // The flow probes tell softirq deliveries from backlog ones by the NET_RX marker
            // the softirq probes keep: without both softirq entry and exit they would lie.
            let softirq_marks = attached
                .iter()
                .filter(|a| matches!(a.probe.name, "softirq_entry" | "softirq_exit"))
                .count()
                == 2;
            if probe.group() == Group::Flows && !softirq_marks {
                let reason =
                    "needs the softirq_entry/exit probes, which are not attached".to_string();
                log::warn!(
                    "tracepoint {}:{} disabled: {reason}",
                    probe.category,
                    probe.name
                );
                disabled.push(Disabled { probe, reason });
                continue;
            }
            match attach(&mut ebpf, &btf, env, probe, &allowed) {
                Ok(a) => {
                    if let Some(l) = &a.limits {
                        log::warn!(
                            "{}:{} attached with limits: {l}",
                            probe.category,
                            probe.name
                        );
                    }
                    attached.push(a);
                }
                Err(reason) => {
                    log::warn!(
                        "tracepoint {}:{} disabled: {reason}",
                        probe.category,
                        probe.name
                    );
                    disabled.push(Disabled { probe, reason });
                }
            }
        }
        if attached.is_empty() && !disabled.is_empty() {
            let reasons: Vec<String> = disabled
                .iter()
                .map(|d| format!("  {}:{}: {}", d.probe.category, d.probe.name, d.reason))
                .collect();
            return Err(LoadError::NothingAttached(reasons.join("\n")));
        }
        let program_ids = ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok())
            .map(|i| i.id())
            .collect();
        Ok(Self {
            ebpf: Some(ebpf),
            program_ids,
            attached,
            disabled,
            slot_irqs,
            irq_names,
            logger,
        })
    }

    /// Prints what the probes logged (only with `kernel_log`).
    pub fn flush_log(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }

    /// Reads every map. Per-CPU values are kept per CPU.
    pub fn snapshot(&self) -> Result<Snapshot, LoadError> {
        let ebpf = self.ebpf.as_ref().expect("present until drop");
        let map = |name: &'static str| ebpf.map(name).ok_or(LoadError::MissingMap(name));
        let err = |name: &'static str| move |source| LoadError::Map { name, source };
        let taken_ns = crate::model::snapshot::monotonic_ns();

        let irq_stats: PerCpuArray<_, IrqStats> =
            PerCpuArray::try_from(map(maps::IRQ_STATS)?).map_err(err(maps::IRQ_STATS))?;
        let mut irqs = Vec::with_capacity(self.slot_irqs.len());
        for (slot, irq) in self.slot_irqs.iter().enumerate() {
            let per_cpu = irq_stats
                .get(&(slot as u32), 0)
                .map_err(err(maps::IRQ_STATS))?;
            let name = match irq {
                Some(n) => self.irq_names.get(n).cloned().unwrap_or_default(),
                None => "(IRQs without a slot)".to_string(),
            };
            irqs.push(IrqSeries {
                irq: *irq,
                name,
                per_cpu: per_cpu.to_vec(),
            });
        }

        let softirq_stats: PerCpuArray<_, SoftirqStats> =
            PerCpuArray::try_from(map(maps::SOFTIRQ_STATS)?).map_err(err(maps::SOFTIRQ_STATS))?;
        let mut softirqs = Vec::with_capacity(NR_SOFTIRQS);
        for vec in 0..NR_SOFTIRQS as u32 {
            softirqs.push(
                softirq_stats
                    .get(&vec, 0)
                    .map_err(err(maps::SOFTIRQ_STATS))?
                    .to_vec(),
            );
        }

        let netdev_stats: PerCpuHashMap<_, u64, NetDevStats> =
            PerCpuHashMap::try_from(map(maps::NETDEV_STATS)?).map_err(err(maps::NETDEV_STATS))?;
        let mut netdevs = Vec::new();
        for item in netdev_stats.iter() {
            let (dev, per_cpu) = item.map_err(err(maps::NETDEV_STATS))?;
            netdevs.push(NetDevSeries::new(dev, per_cpu.to_vec()));
        }

        let flow_info: HashMap<_, FlowKey, FlowInfo> =
            HashMap::try_from(map(maps::FLOWS)?).map_err(err(maps::FLOWS))?;
        let mut flows: BTreeMap<FlowKey, FlowSeries> = BTreeMap::new();
        for item in flow_info.iter() {
            let (key, info) = item.map_err(err(maps::FLOWS))?;
            flows.insert(
                key,
                FlowSeries {
                    key,
                    info,
                    per_cpu: BTreeMap::new(),
                    latency: BTreeMap::new(),
                },
            );
        }
        let flow_cpus: HashMap<_, FlowCpuKey, FlowCpuCounts> =
            HashMap::try_from(map(maps::FLOW_CPUS)?).map_err(err(maps::FLOW_CPUS))?;
        let mut flow_cpu_entries = 0u64;
        for item in flow_cpus.iter() {
            let (key, counts) = item.map_err(err(maps::FLOW_CPUS))?;
            flow_cpu_entries += 1;
            // Counts of a socket whose FLOWS entry was evicted have no addresses: left out, and
            // visible in the eviction count.
            if let Some(f) = flows.get_mut(&key.flow()) {
                f.per_cpu.insert(key.cpu, counts);
            }
        }
        let flow_latency: HashMap<_, FlowCpuKey, FlowLatency> =
            HashMap::try_from(map(maps::FLOW_LATENCY)?).map_err(err(maps::FLOW_LATENCY))?;
        for item in flow_latency.iter() {
            let (key, latency) = item.map_err(err(maps::FLOW_LATENCY))?;
            if let Some(f) = flows.get_mut(&key.flow()) {
                f.latency.insert(key.cpu, latency);
            }
        }

        let losses_map: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map(maps::LOSSES)?).map_err(err(maps::LOSSES))?;
        let mut losses = [0u64; Loss::COUNT as usize];
        for loss in Loss::ALL {
            losses[loss as usize] = losses_map
                .get(&(loss as u32), 0)
                .map_err(err(maps::LOSSES))?
                .iter()
                .sum();
        }

        Ok(Snapshot {
            taken_ns,
            irqs,
            softirqs,
            netdevs,
            flow_entries: flows.len() as u64,
            flow_cpu_entries,
            flows: flows.into_values().collect(),
            losses,
        })
    }
}

/// A verifier log is hundreds of lines; the reason keeps the error and the verifier's verdict
/// (the line before "verification time"). The whole log is at debug level.
fn short_reason(e: &aya::programs::ProgramError) -> String {
    let full = e.to_string();
    let Some((head, log)) = full.split_once("Verifier output:") else {
        return full;
    };
    log::debug!("verifier log: {log}");
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let verdict = lines
        .iter()
        .position(|l| l.starts_with("verification time"))
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| lines.get(i))
        .copied()
        .unwrap_or("(see -vv for the verifier log)");
    format!(
        "{}verifier: {verdict}",
        head.trim_end_matches([' ', '.']).to_string() + ". "
    )
}

/// Which kinds of method may be tried: all unless `IRQTUNE_PROBE_METHODS` (a list of btf,
/// fentry, classic, kprobe, tcp) narrows them, or `--classic` asks for classic tracepoints.
/// `IRQTUNE_FLOW_METHODS` narrows the flow probes alone (empty: none, so flows cannot attach).
#[derive(Clone, Debug)]
struct Allowed {
    all: Vec<String>,
    flows: Option<Vec<String>>,
}

const METHODS: [&str; 5] = ["btf", "fentry", "classic", "kprobe", "tcp"];

fn method_list(var: &str) -> Result<Option<Vec<String>>, LoadError> {
    let Ok(v) = std::env::var(var) else {
        return Ok(None);
    };
    let list: Vec<String> = v
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if let Some(bad) = list.iter().find(|m| !METHODS.contains(&m.as_str())) {
        return Err(LoadError::BadMethod(
            var.to_string(),
            bad.clone(),
            METHODS.join(","),
        ));
    }
    Ok(Some(list))
}

impl Allowed {
    fn from_env(force_classic: bool) -> Result<Allowed, LoadError> {
        let mut all = method_list("IRQTUNE_PROBE_METHODS")?
            .unwrap_or_else(|| METHODS.iter().map(|m| m.to_string()).collect());
        if force_classic {
            all.retain(|m| m != "btf");
        }
        Ok(Allowed {
            all,
            flows: method_list("IRQTUNE_FLOW_METHODS")?,
        })
    }

    fn for_probe(&self, probe: &ProbeDef) -> &[String] {
        match (&self.flows, probe.group()) {
            (Some(f), Group::Flows) => f,
            _ => &self.all,
        }
    }

    fn allows(&self, probe: &ProbeDef, m: &Method) -> bool {
        let name = match (m.kind, m.limits) {
            (_, Some(_)) => "tcp",
            (Attach::Btf, None) => "btf",
            (Attach::Fentry, None) => "fentry",
            (Attach::Classic, None) => "classic",
            (Attach::Kprobe, None) => "kprobe",
            (Attach::Disabled, None) => return false,
        };
        self.for_probe(probe).iter().any(|a| a == name)
    }
}

/// Loads (once) and attaches one program to its hook.
fn attach_part(ebpf: &mut Ebpf, btf: &Btf, part: &Part) -> Result<(), String> {
    let prog = ebpf
        .program_mut(part.program)
        .ok_or_else(|| format!("program {} missing from the object", part.program))?;
    if matches!(part.hook, Hook::Kprobe(_) | Hook::Kretprobe(_)) && !Path::new(KPROBE_PMU).exists()
    {
        return Err(format!(
            "{}: this kernel has no kprobes (no {KPROBE_PMU}: CONFIG_KPROBE_EVENTS is off)",
            part.hook
        ));
    }
    let loaded = prog.fd().is_ok();
    let result = (|| -> Result<(), aya::programs::ProgramError> {
        match part.hook {
            Hook::BtfTracepoint(name) => {
                let p: &mut BtfTracePoint = prog.try_into()?;
                p.load(name, btf)?;
                p.attach()?;
            }
            Hook::Tracepoint(category, name) => {
                let p: &mut TracePoint = prog.try_into()?;
                p.load()?;
                p.attach(category, name)?;
            }
            Hook::Fentry(function) => {
                let p: &mut FEntry = prog.try_into()?;
                p.load(function, btf)?;
                p.attach()?;
            }
            Hook::Fexit(function) => {
                let p: &mut FExit = prog.try_into()?;
                p.load(function, btf)?;
                p.attach()?;
            }
            Hook::Kprobe(function) | Hook::Kretprobe(function) => {
                let p: &mut KProbe = prog.try_into()?;
                if !loaded {
                    p.load()?;
                }
                p.attach(function, 0)?;
            }
        }
        Ok(())
    })();
    result.map_err(|e| match (part.hook, &e) {
        (
            Hook::Fentry(_) | Hook::Fexit(_),
            aya::programs::ProgramError::LoadError { io_error, .. },
        ) if io_error.raw_os_error() == Some(libc::EPERM)
            || io_error.raw_os_error() == Some(524) =>
        {
            format!(
                "{}: the kernel refused the BPF trampoline ({io_error}): it lacks fentry support \
                 (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS) or the function cannot be traced",
                part.hook
            )
        }
        _ => format!("{}: {}", part.hook, short_reason(&e)),
    })
}

/// The perf PMU kprobes attach through; absent when the kernel has no kprobe events.
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe";

/// Detaches and unloads a program whose method failed, so its fd does not linger.
fn unload(ebpf: &mut Ebpf, program: &str) {
    if let Some(p) = ebpf.program_mut(program) {
        let _ = match p {
            aya::programs::Program::BtfTracePoint(p) => p.unload(),
            aya::programs::Program::TracePoint(p) => p.unload(),
            aya::programs::Program::FEntry(p) => p.unload(),
            aya::programs::Program::FExit(p) => p.unload(),
            aya::programs::Program::KProbe(p) => p.unload(),
            _ => Ok(()),
        };
    }
}

/// Attaches a probe by the first of its methods that works; the method and what it does not
/// see, or every method's reason.
fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    env: &Environment,
    probe: &'static ProbeDef,
    allowed: &Allowed,
) -> Result<Attached, String> {
    let mut reasons = Vec::new();
    for method in probe.methods.iter() {
        if !allowed.allows(probe, method) {
            continue;
        }
        let mut limits: Vec<String> = method.limits.map(str::to_string).into_iter().collect();
        let mut failed = None;
        for part in method.parts {
            if let Err(e) = attach_part(ebpf, btf, part) {
                match part.optional {
                    Some(what) => {
                        log::info!("{e}; {what}");
                        limits.push(what.to_string());
                    }
                    None => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        let programs: Vec<&'static str> = method.parts.iter().map(|p| p.program).collect();
        match failed {
            None => {
                let own = Hook::BtfTracepoint(probe.name);
                let classic = Hook::Tracepoint(probe.category, probe.name);
                let hooks: Vec<String> = method
                    .parts
                    .iter()
                    .filter(|p| p.hook != own && p.hook != classic)
                    .map(|p| p.hook.to_string())
                    .collect();
                let mut programs = programs;
                programs.dedup();
                return Ok(Attached {
                    probe,
                    kind: method.kind,
                    via: hooks.join(", "),
                    limits: (!limits.is_empty()).then(|| limits.join("; ")),
                    programs,
                });
            }
            Some(e) => {
                log::info!(
                    "{}:{}: {e}; trying the next method",
                    probe.category,
                    probe.name
                );
                for p in programs {
                    unload(ebpf, p);
                }
                reasons.push(e);
            }
        }
    }
    if reasons.is_empty() {
        return Err(format!(
            "no method allowed to observe it (methods allowed: {})",
            match allowed.for_probe(probe).join(",") {
                m if m.is_empty() => "none".to_string(),
                m => m,
            }
        ));
    }
    // Say plainly when the kernel simply lacks the tracepoint and nothing else stood in.
    if reasons.len() == 1 && !env.has_tracepoint(probe.category, probe.name) {
        return Err(format!(
            "this kernel has no tracepoint {}:{} (no {}/events/{}/{})",
            probe.category,
            probe.name,
            env.tracefs.display(),
            probe.category,
            probe.name
        ));
    }
    Err(reasons.join("; "))
}

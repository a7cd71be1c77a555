//! Loads and attaches the probes, and reads their maps into a [`Snapshot`].
//!
//! Every tracepoint has two programs in the object: a BTF tracepoint (preferred: the cheapest
//! dispatch) and a classic tracepoint, attached only when the first cannot be. A tracepoint
//! that neither can use is disabled with a warning; the rest keep working. Dropping
//! [`Probes`] detaches and unloads everything.

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{BtfTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use irq_ebpf::{
    globals, maps, CpuState, FlowCpuCounts, FlowCpuKey, FlowInfo, FlowKey, FlowLatency, IrqStats,
    Loss, NetDevStats, SoftirqStats, MAX_CPUS, MAX_IRQ_NR, MAX_IRQ_SLOTS, NR_SOFTIRQS,
};

use crate::{
    model::procfs,
    model::snapshot::{FlowSeries, IrqSeries, NetDevSeries, Snapshot},
    system::preflight::Environment,
};

/// The compiled probes, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/irq-probes"));

/// What a group of probes measures; groups can be switched off at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Hardirq,
    Softirq,
    NetRx,
    Flows,
}

/// One tracepoint and its two programs.
#[derive(Debug)]
pub struct ProbeDef {
    pub group: Group,
    pub category: &'static str,
    pub name: &'static str,
    btf_program: &'static str,
    tp_program: &'static str,
}

impl ProbeDef {
    /// The two programs' names in the object: BTF tracepoint first, then classic.
    pub fn program_names(&self) -> [&'static str; 2] {
        [self.btf_program, self.tp_program]
    }
}

const fn def(
    group: Group,
    category: &'static str,
    name: &'static str,
    btf_program: &'static str,
    tp_program: &'static str,
) -> ProbeDef {
    ProbeDef {
        group,
        category,
        name,
        btf_program,
        tp_program,
    }
}

/// Entry probes come before exit probes, so an exit never runs without its entry attached.
pub const PROBES: [ProbeDef; 9] = [
    def(
        Group::Hardirq,
        "irq",
        "irq_handler_entry",
        "irq_handler_entry_btf",
        "irq_handler_entry_tp",
    ),
    def(
        Group::Hardirq,
        "irq",
        "irq_handler_exit",
        "irq_handler_exit_btf",
        "irq_handler_exit_tp",
    ),
    def(
        Group::Softirq,
        "irq",
        "softirq_raise",
        "softirq_raise_btf",
        "softirq_raise_tp",
    ),
    def(
        Group::Softirq,
        "irq",
        "softirq_entry",
        "softirq_entry_btf",
        "softirq_entry_tp",
    ),
    def(
        Group::Softirq,
        "irq",
        "softirq_exit",
        "softirq_exit_btf",
        "softirq_exit_tp",
    ),
    def(
        Group::NetRx,
        "napi",
        "napi_poll",
        "napi_poll_btf",
        "napi_poll_tp",
    ),
    def(
        Group::NetRx,
        "net",
        "netif_receive_skb",
        "netif_receive_skb_btf",
        "netif_receive_skb_tp",
    ),
    def(
        Group::Flows,
        "sock",
        "sk_data_ready",
        "sk_data_ready_btf",
        "sk_data_ready_tp",
    ),
    def(
        Group::Flows,
        "sock",
        "sock_recv_length",
        "sock_recv_length_btf",
        "sock_recv_length_tp",
    ),
];

/// How a tracepoint ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    Btf,
    Classic,
}

#[derive(Debug)]
pub struct Attached {
    pub probe: &'static ProbeDef,
    pub kind: AttachKind,
    /// The program's name in the object (for bpftool and benchmarks).
    pub program: &'static str,
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

        let mut attached: Vec<Attached> = Vec::new();
        let mut disabled = Vec::new();
        for probe in &PROBES {
            if opts.skip.contains(&probe.group) {
                continue;
            }
            // The flow probes tell softirq deliveries from backlog ones by the NET_RX marker
            // the softirq probes keep: without both softirq entry and exit they would lie.
            let softirq_marks = attached
                .iter()
                .filter(|a| matches!(a.probe.name, "softirq_entry" | "softirq_exit"))
                .count()
                == 2;
            if probe.group == Group::Flows && !softirq_marks {
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
            match attach(&mut ebpf, &btf, env, probe, opts.force_classic) {
                Ok((kind, program)) => attached.push(Attached {
                    probe,
                    kind,
                    program,
                }),
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

fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    env: &Environment,
    probe: &'static ProbeDef,
    force_classic: bool,
) -> Result<(AttachKind, &'static str), String> {
    let mut btf_error = String::from("not tried (classic tracepoints forced)");
    if !force_classic {
        let prog = ebpf
            .program_mut(probe.btf_program)
            .ok_or_else(|| format!("program {} missing", probe.btf_program))?;
        let result = (|| -> Result<(), aya::programs::ProgramError> {
            let p: &mut BtfTracePoint = prog.try_into()?;
            p.load(probe.name, btf)?;
            p.attach()?;
            Ok(())
        })();
        match result {
            Ok(()) => return Ok((AttachKind::Btf, probe.btf_program)),
            Err(e) => {
                btf_error = short_reason(&e);
                log::info!(
                    "BTF tracepoint {} unavailable ({btf_error}); trying the classic tracepoint",
                    probe.name
                );
                // Unload the failed program so its fd does not linger.
                if let Some(p) = ebpf.program_mut(probe.btf_program) {
                    let p: Result<&mut BtfTracePoint, _> = p.try_into();
                    if let Ok(p) = p {
                        let _ = p.unload();
                    }
                }
            }
        }
    }
    let prog = ebpf
        .program_mut(probe.tp_program)
        .ok_or_else(|| format!("program {} missing", probe.tp_program))?;
    let result = (|| -> Result<(), aya::programs::ProgramError> {
        let p: &mut TracePoint = prog.try_into()?;
        p.load()?;
        p.attach(probe.category, probe.name)?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok((AttachKind::Classic, probe.tp_program)),
        // Say plainly when the kernel simply lacks the tracepoint (older kernel, config).
        Err(_) if !env.has_tracepoint(probe.category, probe.name) => Err(format!(
            "this kernel has no tracepoint {}:{} (no {}/events/{}/{})",
            probe.category,
            probe.name,
            env.tracefs.display(),
            probe.category,
            probe.name
        )),
        Err(e) => Err(format!(
            "BTF tracepoint: {btf_error}; classic tracepoint: {}",
            short_reason(&e)
        )),
    }
}

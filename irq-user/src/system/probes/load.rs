//! Loading: the object with its globals and map sizes set from the machine, each CPU's state,
//! the IRQ slots, then every probe attached by its cheapest working method.

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{Array, PerCpuArray, PerCpuValues},
    Btf, Ebpf, EbpfLoader,
};
use irq_ebpf::{globals, maps, CpuState, MAX_CPUS, MAX_IRQ_NR, MAX_IRQ_SLOTS};

use super::{
    attach::{attach, Allowed, Link},
    Attached, Disabled, Group, LoadError, ProbeOptions, Probes, OBJECT, PROBES,
};
use crate::{model::procfs, system::preflight::Environment, system::sysroot::SysRoot};

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

/// IRQ slots for the IRQs of /proc/interrupts now: slot 0 for IRQs without one, then one per
/// IRQ; and the size the IRQ maps get: those, plus room for IRQs that appear later (a quarter
/// more, at least 16: devices hot-plugged, queues added), within [`MAX_IRQ_SLOTS`].
pub(super) struct IrqSlots {
    pub irqs: Vec<Option<u32>>,
    pub names: BTreeMap<u32, String>,
    pub size: u32,
}

impl IrqSlots {
    fn of(interrupts: &procfs::Interrupts) -> IrqSlots {
        let mut irqs = vec![None];
        let mut names = BTreeMap::new();
        for row in &interrupts.rows {
            let Some(irq) = row.irq else { continue };
            names.insert(irq, row.name.clone());
            if irq >= MAX_IRQ_NR || irqs.len() >= MAX_IRQ_SLOTS as usize {
                log::warn!(
                    "IRQ {irq} ({}) has no statistics slot; counted as unmapped",
                    row.name
                );
                continue;
            }
            irqs.push(Some(irq));
        }
        let present = irqs.len() as u32;
        let size = (present + (present / 4).max(16)).min(MAX_IRQ_SLOTS);
        IrqSlots { irqs, names, size }
    }
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

/// Each CPU's ksoftirqd PID in its own state entry, where the softirq probes look.
fn initial_cpu_state() -> Result<Vec<CpuState>, LoadError> {
    let pids: BTreeMap<u32, u32> = procfs::ksoftirqd_pids(&SysRoot::default())
        .into_iter()
        .collect();
    let nr = aya::util::nr_cpus().map_err(|(_, e)| LoadError::PossibleCpus(e))?;
    Ok((0..nr as u32)
        .map(|cpu| CpuState {
            ksoftirqd_pid: pids.get(&cpu).copied().unwrap_or(0),
            ..CpuState::default()
        })
        .collect())
}

/// Writes `states` as every CPU's state (at load, and before attaching again).
pub(super) fn set_cpu_state(ebpf: &mut Ebpf, states: &[CpuState]) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(maps::CPU_STATE)
        .ok_or(LoadError::MissingMap(maps::CPU_STATE))?;
    let mut state: PerCpuArray<_, CpuState> =
        PerCpuArray::try_from(map).map_err(map_err(maps::CPU_STATE))?;
    let values =
        PerCpuValues::try_from(states.to_vec()).map_err(|e| map_err(maps::CPU_STATE)(e.into()))?;
    state.set(0, values, 0).map_err(map_err(maps::CPU_STATE))
}

fn fill_irq_slots(ebpf: &mut Ebpf, slots: &IrqSlots) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(maps::IRQ_SLOTS)
        .ok_or(LoadError::MissingMap(maps::IRQ_SLOTS))?;
    let mut table: Array<_, u32> = Array::try_from(map).map_err(map_err(maps::IRQ_SLOTS))?;
    for (slot, irq) in slots.irqs.iter().enumerate() {
        if let Some(irq) = irq {
            table
                .set(*irq, slot as u32 + 1, 0)
                .map_err(map_err(maps::IRQ_SLOTS))?;
        }
    }
    Ok(())
}

/// What the probes found attached, left off, and their links.
struct Attachments {
    attached: Vec<Attached>,
    disabled: Vec<Disabled>,
    links: Vec<Link>,
}

/// Attaches every probe by its first working method; the rest is disabled with the reasons.
fn attach_all(
    ebpf: &mut Ebpf,
    btf: &Btf,
    env: &Environment,
    opts: &ProbeOptions,
) -> Result<Attachments, LoadError> {
    let allowed = Allowed::from_env(opts.force_classic)?;
    let mut a = Attachments {
        attached: Vec::new(),
        disabled: Vec::new(),
        links: Vec::new(),
    };
    for probe in &PROBES {
        if opts.skip.contains(&probe.group()) {
            continue;
        }
        let off = |reason: &str, by_choice: bool| Disabled {
            probe,
            reason: reason.to_string(),
            by_choice,
        };
        if probe.per_packet() && !opts.per_packet {
            a.disabled.push(off(
                "per-packet detail not asked for (--per-packet): NET_RX packets come from napi_poll and /proc/net/softnet_stat",
                true,
            ));
            continue;
        }
        // The flow probes tell softirq deliveries from backlog ones by the NET_RX marker the
        // softirq probes keep: without both softirq entry and exit they would lie.
        let softirq_marks = a
            .attached
            .iter()
            .filter(|x| matches!(x.probe.name, "softirq_entry" | "softirq_exit"))
            .count()
            == 2;
        let result = if probe.group() == Group::Flows && !softirq_marks {
            Err("needs the softirq_entry/exit probes, which are not attached".to_string())
        } else {
            attach(ebpf, btf, env, probe, &allowed, &mut a.links)
        };
        match result {
            Ok(x) => {
                if let Some(l) = &x.limits {
                    log::warn!(
                        "{}:{} attached with limits: {l}",
                        probe.category,
                        probe.name
                    );
                }
                a.attached.push(x);
            }
            Err(reason) => {
                log::warn!(
                    "tracepoint {}:{} disabled: {reason}",
                    probe.category,
                    probe.name
                );
                a.disabled.push(off(&reason, false));
            }
        }
    }
    if a.attached.is_empty() && a.disabled.iter().any(|d| !d.by_choice) {
        let reasons: Vec<String> = a
            .disabled
            .iter()
            .map(|d| format!("  {}:{}: {}", d.probe.category, d.probe.name, d.reason))
            .collect();
        return Err(LoadError::NothingAttached(reasons.join("\n")));
    }
    Ok(a)
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
        // Dense IRQ slots: arrays indexed by slot keep hash maps off the hardirq path; sized
        // to the machine, not to a fixed maximum times every possible CPU.
        let slots = IrqSlots::of(&procfs::read_interrupts(&SysRoot::default())?);

        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries(maps::IRQ_CPU, slots.size)
            .map_max_entries(maps::IRQ_HIST, slots.size)
            .override_global(globals::CPU_FILTER_ON, &filter_on, true)
            .override_global(globals::CPU_FILTER, &filter, true)
            .override_global(globals::FLOWS_ON, &flows_on, true)
            .override_global(globals::FLOW_SAMPLE, &flow_sample, true)
            .override_global(globals::OFFSETS, &offsets, true)
            .load(OBJECT)?;
        let initial_state = initial_cpu_state()?;
        set_cpu_state(&mut ebpf, &initial_state)?;
        fill_irq_slots(&mut ebpf, &slots)?;
        let a = attach_all(&mut ebpf, &btf, env, opts)?;
        let program_ids = ebpf
            .programs()
            .filter_map(|(_, p)| p.info().ok())
            .map(|i| i.id())
            .collect();
        Ok(Self {
            ebpf: Some(ebpf),
            program_ids,
            attached: a.attached,
            disabled: a.disabled,
            slot_irqs: slots.irqs,
            irq_names: slots.names,
            initial_state,
            links: a.links,
            observed_ns: 0,
            attached_since: Some(crate::model::snapshot::monotonic_ns()),
        })
    }
}

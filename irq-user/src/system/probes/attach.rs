//! Attaching: each probe by the first of its methods that works, and detaching and attaching
//! again for a duty cycle.

use std::path::Path;

use aya::{
    programs::{
        fentry::FEntryLinkId, fexit::FExitLinkId, kprobe::KProbeLinkId,
        tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId, BtfTracePoint, FEntry, FExit,
        KProbe, ProgramError, TracePoint,
    },
    Btf, Ebpf,
};

use super::{Attached, Group, Hook, LoadError, Method, MethodKind, Part, ProbeDef};
use crate::{model::profile::Attach, system::preflight::Environment};

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
pub(super) struct Allowed {
    all: Vec<MethodKind>,
    flows: Option<Vec<MethodKind>>,
}

fn method_list(var: &str) -> Result<Option<Vec<MethodKind>>, LoadError> {
    let Ok(v) = std::env::var(var) else {
        return Ok(None);
    };
    v.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.parse()
                .map_err(|e| LoadError::BadMethod(var.to_string(), e))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl Allowed {
    pub(super) fn from_env(force_classic: bool) -> Result<Allowed, LoadError> {
        let mut all =
            method_list("IRQTUNE_PROBE_METHODS")?.unwrap_or_else(|| MethodKind::ALL.to_vec());
        if force_classic {
            all.retain(|m| *m != MethodKind::Btf);
        }
        Ok(Allowed {
            all,
            flows: method_list("IRQTUNE_FLOW_METHODS")?,
        })
    }

    fn for_probe(&self, probe: &ProbeDef) -> &[MethodKind] {
        match (&self.flows, probe.group()) {
            (Some(f), Group::Flows) => f,
            _ => &self.all,
        }
    }

    fn allows(&self, probe: &ProbeDef, m: &Method) -> bool {
        m.kind != Attach::Disabled && self.for_probe(probe).contains(&m.method)
    }
}

/// A program's attachment, to detach it again.
#[derive(Debug)]
pub(super) enum Link {
    Btf(&'static str, BtfTracePointLinkId),
    Tracepoint(&'static str, TracePointLinkId),
    Fentry(&'static str, FEntryLinkId),
    Fexit(&'static str, FExitLinkId),
    Kprobe(&'static str, KProbeLinkId),
}

/// Detaches a link; the program stays loaded.
pub(super) fn detach(ebpf: &mut Ebpf, link: Link) -> Result<(), ProgramError> {
    let name = match &link {
        Link::Btf(n, _)
        | Link::Tracepoint(n, _)
        | Link::Fentry(n, _)
        | Link::Fexit(n, _)
        | Link::Kprobe(n, _) => *n,
    };
    let prog = ebpf
        .program_mut(name)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    match link {
        Link::Btf(_, id) => <&mut BtfTracePoint>::try_from(prog)?.detach(id),
        Link::Tracepoint(_, id) => <&mut TracePoint>::try_from(prog)?.detach(id),
        Link::Fentry(_, id) => <&mut FEntry>::try_from(prog)?.detach(id),
        Link::Fexit(_, id) => <&mut FExit>::try_from(prog)?.detach(id),
        Link::Kprobe(_, id) => <&mut KProbe>::try_from(prog)?.detach(id),
    }
}

/// Attaches a loaded program to its hook again (after a [`detach`]).
pub(super) fn reattach(ebpf: &mut Ebpf, part: &'static Part) -> Result<Link, ProgramError> {
    let prog = ebpf
        .program_mut(part.program)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    Ok(match part.hook {
        Hook::BtfTracepoint(_) => {
            let p: &mut BtfTracePoint = prog.try_into()?;
            Link::Btf(part.program, p.attach()?)
        }
        Hook::Tracepoint(category, name) => {
            let p: &mut TracePoint = prog.try_into()?;
            Link::Tracepoint(part.program, p.attach(category, name)?)
        }
        Hook::Fentry(_) => {
            let p: &mut FEntry = prog.try_into()?;
            Link::Fentry(part.program, p.attach()?)
        }
        Hook::Fexit(_) => {
            let p: &mut FExit = prog.try_into()?;
            Link::Fexit(part.program, p.attach()?)
        }
        Hook::Kprobe(function) | Hook::Kretprobe(function) => {
            let p: &mut KProbe = prog.try_into()?;
            Link::Kprobe(part.program, p.attach(function, 0)?)
        }
    })
}

/// Loads (once) and attaches one program to its hook.
fn attach_part(ebpf: &mut Ebpf, btf: &Btf, part: &'static Part) -> Result<Link, String> {
    if matches!(part.hook, Hook::Kprobe(_) | Hook::Kretprobe(_)) && !Path::new(KPROBE_PMU).exists()
    {
        return Err(format!(
            "{}: this kernel has no kprobes (no {KPROBE_PMU}: CONFIG_KPROBE_EVENTS is off)",
            part.hook
        ));
    }
    load_once(ebpf, btf, part)
        .and_then(|()| reattach(ebpf, part))
        .map_err(|e| match (part.hook, &e) {
            (Hook::Fentry(_) | Hook::Fexit(_), ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EPERM)
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

/// Loads a part's program into the kernel unless it already is (two parts may share one, as
/// the kprobe on inet_recvmsg and inet6_recvmsg do).
fn load_once(ebpf: &mut Ebpf, btf: &Btf, part: &Part) -> Result<(), ProgramError> {
    let prog = ebpf
        .program_mut(part.program)
        .ok_or(ProgramError::UnexpectedProgramType)?;
    if prog.fd().is_ok() {
        return Ok(());
    }
    match part.hook {
        Hook::BtfTracepoint(name) => <&mut BtfTracePoint>::try_from(prog)?.load(name, btf),
        Hook::Tracepoint(..) => <&mut TracePoint>::try_from(prog)?.load(),
        Hook::Fentry(function) => <&mut FEntry>::try_from(prog)?.load(function, btf),
        Hook::Fexit(function) => <&mut FExit>::try_from(prog)?.load(function, btf),
        Hook::Kprobe(_) | Hook::Kretprobe(_) => <&mut KProbe>::try_from(prog)?.load(),
    }
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
/// see (its links appended to `links`), or every method's reason.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    btf: &Btf,
    env: &Environment,
    probe: &'static ProbeDef,
    allowed: &Allowed,
    links: &mut Vec<Link>,
) -> Result<Attached, String> {
    let mut reasons = Vec::new();
    for method in probe.methods.iter() {
        if !allowed.allows(probe, method) {
            continue;
        }
        let mut limits: Vec<String> = method.limits.map(str::to_string).into_iter().collect();
        let mut failed = None;
        let mut made = Vec::new();
        let mut parts = Vec::new();
        for part in method.parts {
            match attach_part(ebpf, btf, part) {
                Ok(link) => {
                    made.push(link);
                    parts.push(part);
                }
                Err(e) => match part.optional {
                    Some(what) => {
                        log::info!("{e}; {what}");
                        limits.push(what.to_string());
                    }
                    None => {
                        failed = Some(e);
                        break;
                    }
                },
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
                links.extend(made);
                return Ok(Attached {
                    probe,
                    kind: method.kind,
                    parts,
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
                for l in made {
                    let _ = detach(ebpf, l);
                }
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
            match allowed.for_probe(probe) {
                [] => "none".to_string(),
                m => m.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
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

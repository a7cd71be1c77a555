//! The plan file: versioned JSON naming, for one host and boot, each knob with its current
//! and proposed value and why. `irqtune plan` writes it, `irqtune apply` checks and applies it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    model::cpulist,
    model::machine::{
        ethtool::{ChannelKind, CoalesceParam, RingKind},
        napi::NapiParam,
        HostId,
    },
};

pub const PLAN_FORMAT: &str = "irqtune-plan";
pub const PLAN_VERSION: u32 = 1;

/// A value irqtune may change. The file it lives in follows from the knob, so a plan can
/// only ever write the files steering owns, whatever the plan file says.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Knob {
    /// /proc/irq/N/smp_affinity (hex mask).
    IrqAffinity { irq: u32 },
    /// /sys/class/net/IFACE/queues/rx-Q/rps_cpus (hex mask).
    RpsCpus { iface: String, queue: u32 },
    /// /sys/class/net/IFACE/queues/rx-Q/rps_flow_cnt.
    RpsFlowCnt { iface: String, queue: u32 },
    /// /sys/class/net/IFACE/queues/tx-Q/xps_cpus (hex mask).
    XpsCpus { iface: String, queue: u32 },
    /// /proc/sys/net/core/rps_sock_flow_entries.
    RpsSockFlowEntries,
    /// /proc/sys/net/core/netdev_max_backlog: packets each CPU's backlog queue holds (RPS,
    /// netif_rx) before it drops.
    NetdevMaxBacklog,
    /// /proc/sys/net/core/netdev_budget: packets one NET_RX run may process.
    NetdevBudget,
    /// /proc/sys/net/core/netdev_budget_usecs: time one NET_RX run may take.
    NetdevBudgetUsecs,
    /// A NIC's channel count (ethtool -L; ethtool-netlink CHANNELS_SET): one queue, and
    /// usually one IRQ, per channel.
    Channels { iface: String, channel: ChannelKind },
    /// A NIC's descriptor ring size (ethtool -G; RINGS_SET).
    Ring { iface: String, ring: RingKind },
    /// A NIC's interrupt coalescing parameter (ethtool -C; COALESCE_SET).
    Coalesce { iface: String, param: CoalesceParam },
    /// /sys/class/net/IFACE/threaded: its NAPIs polled by kthreads the scheduler places (1),
    /// or in softirq context (0).
    NapiThreaded { iface: String },
    /// /sys/class/net/IFACE/napi_defer_hard_irqs: empty polls before its IRQ is re-armed.
    NapiDeferHardIrqs { iface: String },
    /// /sys/class/net/IFACE/gro_flush_timeout (ns): the timer that polls while IRQs are
    /// deferred.
    GroFlushTimeout { iface: String },
    /// The CPUs a threaded NAPI's kthread ("napi/IFACE-ID") may run on (sched_setaffinity;
    /// hex mask, as /proc/PID/status shows it). Before the kthread exists (threaded NAPI
    /// off), the CPUs it will be created with: kthreadd's.
    NapiKthread { iface: String, napi: u32 },
    /// One NAPI's deferral or IRQ-suspension setting (netdev-genl napi-set, 6.13+).
    NapiSetting {
        iface: String,
        napi: u32,
        setting: NapiParam,
    },
}

/// How a knob's value is written and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Mask,
    Count,
}

impl Knob {
    /// The file below the root.
    pub fn path(&self) -> String {
        match self {
            Knob::IrqAffinity { irq } => format!("proc/irq/{irq}/smp_affinity"),
            Knob::RpsCpus { iface, queue } => {
                format!("sys/class/net/{iface}/queues/rx-{queue}/rps_cpus")
            }
            Knob::RpsFlowCnt { iface, queue } => {
                format!("sys/class/net/{iface}/queues/rx-{queue}/rps_flow_cnt")
            }
            Knob::XpsCpus { iface, queue } => {
                format!("sys/class/net/{iface}/queues/tx-{queue}/xps_cpus")
            }
            Knob::RpsSockFlowEntries => crate::model::machine::RPS_SOCK_FLOW_ENTRIES.to_string(),
            Knob::NetdevMaxBacklog => crate::model::machine::softnet::MAX_BACKLOG.to_string(),
            Knob::NetdevBudget => crate::model::machine::softnet::BUDGET.to_string(),
            Knob::NetdevBudgetUsecs => crate::model::machine::softnet::BUDGET_USECS.to_string(),
            // Not files: names for the journal, read and set through ethtool-netlink.
            Knob::Channels { iface, channel } => {
                format!("ethtool/{iface}/channels/{}", channel.name())
            }
            Knob::Ring { iface, ring } => format!("ethtool/{iface}/rings/{}", ring.name()),
            Knob::Coalesce { iface, param } => format!("ethtool/{iface}/coalesce/{}", param.name()),
            Knob::NapiThreaded { iface } => format!("sys/class/net/{iface}/threaded"),
            Knob::NapiDeferHardIrqs { iface } => {
                format!("sys/class/net/{iface}/napi_defer_hard_irqs")
            }
            Knob::GroFlushTimeout { iface } => format!("sys/class/net/{iface}/gro_flush_timeout"),
            // Not a file: a name for the journal; the kthread is found by its NAPI.
            Knob::NapiKthread { iface, napi } => format!("napi/{iface}/{napi}/kthread_cpus"),
            Knob::NapiSetting {
                iface,
                napi,
                setting,
            } => format!("napi/{iface}/{napi}/{}", setting.name()),
        }
    }

    pub fn value_kind(&self) -> ValueKind {
        match self {
            Knob::RpsFlowCnt { .. }
            | Knob::RpsSockFlowEntries
            | Knob::NetdevMaxBacklog
            | Knob::NetdevBudget
            | Knob::NetdevBudgetUsecs
            | Knob::Channels { .. }
            | Knob::Ring { .. }
            | Knob::Coalesce { .. }
            | Knob::NapiThreaded { .. }
            | Knob::NapiDeferHardIrqs { .. }
            | Knob::GroFlushTimeout { .. }
            | Knob::NapiSetting { .. } => ValueKind::Count,
            _ => ValueKind::Mask,
        }
    }

    /// A receive drop lever (backlog, budget, rx ring): changed only for fewer drops.
    pub fn is_drop_lever(&self) -> bool {
        matches!(
            self,
            Knob::NetdevMaxBacklog
                | Knob::NetdevBudget
                | Knob::NetdevBudgetUsecs
                | Knob::Ring {
                    ring: RingKind::Rx,
                    ..
                }
        )
    }

    /// The values a count knob may be set to, and why: what the kernel takes, less what would
    /// stop receive processing. None: no bound beyond the number itself.
    pub fn count_range(&self) -> Option<(u64, u64, &'static str)> {
        let int = i32::MAX as u64;
        let u32_max = u64::from(u32::MAX);
        match self {
            Knob::NetdevMaxBacklog | Knob::NetdevBudget | Knob::NetdevBudgetUsecs => {
                Some((1, int, "the kernel's int; 0 stops receive processing"))
            }
            Knob::NapiThreaded { .. } => Some((0, 2, "off, on, or busy-polling kthreads (6.17+)")),
            Knob::NapiDeferHardIrqs { .. }
            | Knob::NapiSetting {
                setting: NapiParam::DeferHardIrqs,
                ..
            } => Some((0, int, "the kernel's S32_MAX")),
            Knob::NapiSetting { .. } => Some((0, u32_max, "netdev-genl's u32 (ns)")),
            Knob::Coalesce { param, .. } if param.is_switch() => Some((0, 1, "a switch")),
            Knob::Coalesce { .. } => Some((0, u32_max, "ethtool-netlink's u32")),
            Knob::Channels { .. } | Knob::Ring { .. } => Some((
                1,
                u32_max,
                "a NIC needs one at least; ethtool-netlink's u32",
            )),
            _ => None,
        }
    }

    /// A NIC setting set through ethtool-netlink (the live machine only).
    pub fn is_ethtool(&self) -> bool {
        matches!(
            self,
            Knob::Channels { .. } | Knob::Ring { .. } | Knob::Coalesce { .. }
        )
    }

    /// Set through the kernel, not a file: the live machine only, never in a --root tree.
    pub fn is_live_only(&self) -> bool {
        self.is_ethtool() || matches!(self, Knob::NapiKthread { .. } | Knob::NapiSetting { .. })
    }

    /// Interface names come from plan and journal files: they must be one path component.
    pub fn check(&self) -> Result<(), ValueError> {
        match self {
            Knob::RpsCpus { iface, .. }
            | Knob::RpsFlowCnt { iface, .. }
            | Knob::XpsCpus { iface, .. }
            | Knob::Channels { iface, .. }
            | Knob::Ring { iface, .. }
            | Knob::Coalesce { iface, .. }
            | Knob::NapiThreaded { iface }
            | Knob::NapiDeferHardIrqs { iface }
            | Knob::GroFlushTimeout { iface }
            | Knob::NapiKthread { iface, .. }
            | Knob::NapiSetting { iface, .. } => {
                if iface.is_empty()
                    || iface.len() > 15
                    || iface.contains('/')
                    || iface == "."
                    || iface == ".."
                {
                    return Err(ValueError::Iface(iface.clone()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Knob::IrqAffinity { irq } => write!(f, "IRQ {irq} affinity"),
            Knob::RpsCpus { iface, queue } => write!(f, "{iface} rx-{queue} rps_cpus"),
            Knob::RpsFlowCnt { iface, queue } => write!(f, "{iface} rx-{queue} rps_flow_cnt"),
            Knob::XpsCpus { iface, queue } => write!(f, "{iface} tx-{queue} xps_cpus"),
            Knob::RpsSockFlowEntries => write!(f, "rps_sock_flow_entries"),
            Knob::NetdevMaxBacklog => write!(f, "netdev_max_backlog"),
            Knob::NetdevBudget => write!(f, "netdev_budget"),
            Knob::NetdevBudgetUsecs => write!(f, "netdev_budget_usecs"),
            Knob::Channels { iface, channel } => write!(f, "{iface} channels {}", channel.name()),
            Knob::Ring { iface, ring } => write!(f, "{iface} ring {}", ring.name()),
            Knob::Coalesce { iface, param } => write!(f, "{iface} coalesce {}", param.name()),
            Knob::NapiThreaded { iface } => write!(f, "{iface} threaded NAPI"),
            Knob::NapiDeferHardIrqs { iface } => write!(f, "{iface} napi_defer_hard_irqs"),
            Knob::GroFlushTimeout { iface } => write!(f, "{iface} gro_flush_timeout"),
            Knob::NapiKthread { iface, napi } => write!(f, "{iface} NAPI {napi} kthread CPUs"),
            Knob::NapiSetting {
                iface,
                napi,
                setting,
            } => write!(f, "{iface} NAPI {napi} {}", setting.name()),
        }
    }
}

/// A value or a name in a plan that cannot be what its knob takes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error(transparent)]
    Mask(#[from] cpulist::CpuListError),
    #[error("{0:?} is not a count")]
    Count(String),
    #[error("{0:?} is not an interface name")]
    Iface(String),
}

/// A knob's value in a canonical form, so "00000000,00000003" and "3" compare equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Cpus(Vec<u32>),
    Count(u64),
}

impl Value {
    pub fn parse(kind: ValueKind, text: &str) -> Result<Value, ValueError> {
        match kind {
            ValueKind::Mask => Ok(Value::Cpus(cpulist::parse_mask(text)?)),
            ValueKind::Count => text
                .trim()
                .parse()
                .map(Value::Count)
                .map_err(|_| ValueError::Count(text.to_string())),
        }
    }

    pub fn cpus(&self) -> &[u32] {
        match self {
            Value::Cpus(c) => c,
            Value::Count(_) => &[],
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Cpus(c) if c.is_empty() => write!(f, "none"),
            Value::Cpus(c) => write!(f, "CPUs {}", cpulist::format(c)),
            Value::Count(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    #[serde(flatten)]
    pub knob: Knob,
    /// The file, for the reader; apply derives it from the knob.
    pub path: String,
    /// The value as read when the plan was made.
    pub current: String,
    /// The value to write, in the file's own format.
    pub proposed: String,
    /// Why, in words.
    pub reason: String,
    /// The measurements behind it.
    pub evidence: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub version: u32,
    pub host: HostId,
    pub created_unix: u64,
    /// What the load figures come from ("profile run.json", "/proc/interrupts counts").
    pub load_source: String,
    /// How the plan steers the flows it was made for (plans written without it: the
    /// planner's first choice).
    #[serde(default)]
    pub strategy: Strategy,
    pub changes: Vec<Change>,
    /// What was looked at and left alone, and why (managed IRQs, values the kernel refuses).
    pub notes: Vec<String>,
}

/// What a plan changes: how it steers the receive processing of flows read away from their
/// softirq CPU (the alternatives `tune` tries in turn when one does not help the workload),
/// or the softnet settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Processing follows the readers: RFS (with RPS where the NIC lacks queue vectors),
    /// RPS toward the readers of flows RFS cannot steer. Best for the cache when the
    /// readers' CPUs have room for it (Documentation/networking/scaling.rst).
    #[default]
    FollowReaders,
    /// Processing on the NIC node's CPUs other than the readers' (RPS, queue vectors), RFS
    /// left off: for readers whose CPUs are too busy to take the receive work too.
    AwayFromReaders,
    /// The receive drop levers alone (netdev_max_backlog, netdev_budget, a NIC's rx ring),
    /// where the backlog or the NIC dropped or NET_RX ran out of budget: a plan of its own,
    /// so its effect is judged apart from the steering's, and kept only for fewer drops.
    Drops,
    /// Threaded NAPI where a device's NAPI polls take its readers' CPUs (or fall to
    /// ksoftirqd there): its polls move to kthreads, placed off the readers' CPUs.
    Threaded,
}

impl Strategy {
    /// The steering strategies, in the order `tune` tries them.
    pub const STEERING: [Strategy; 2] = [Strategy::FollowReaders, Strategy::AwayFromReaders];

    pub fn describe(self) -> &'static str {
        match self {
            Strategy::FollowReaders => {
                "receive processing follows the readers (RFS/RPS toward their CPUs)"
            }
            Strategy::AwayFromReaders => {
                "receive processing on other CPUs than the readers' (RPS or queue vectors, no RFS)"
            }
            Strategy::Drops => {
                "the receive drop levers (netdev_max_backlog, netdev_budget, NIC rx rings)"
            }
            Strategy::Threaded => "threaded NAPI, its kthreads off the readers' CPUs",
        }
    }
}

pub use crate::model::jsonfile::JsonFileError as PlanError;

impl Plan {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serialises") + "\n"
    }

    pub fn parse(
        text: &str,
        name: &str,
        possible: &[u32],
        online: &[u32],
    ) -> Result<Plan, PlanError> {
        let invalid = |msg: String| PlanError::Invalid {
            path: name.to_string(),
            msg,
        };
        let plan: Plan = crate::model::jsonfile::parse(text, name, "plan")?;
        if plan.format != PLAN_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, expected {PLAN_FORMAT:?}",
                plan.format
            )));
        }
        if plan.version != PLAN_VERSION {
            return Err(invalid(format!(
                "plan version {} is not supported (this irqtune reads version {PLAN_VERSION}); make the plan again",
                plan.version
            )));
        }
        for (i, c) in plan.changes.iter().enumerate() {
            let at = |msg: String| invalid(format!("change {} ({}): {msg}", i + 1, c.knob));
            c.knob.check().map_err(|e| at(e.to_string()))?;
            if c.path.trim_start_matches('/') != c.knob.path() {
                return Err(at(format!(
                    "path {:?} does not match the knob (expected /{})",
                    c.path,
                    c.knob.path()
                )));
            }
            let value =
                Value::parse(c.knob.value_kind(), &c.proposed).map_err(|e| at(e.to_string()))?;
            Value::parse(c.knob.value_kind(), &c.current).map_err(|e| at(e.to_string()))?;
            for cpu in value.cpus() {
                if !possible.contains(cpu) {
                    return Err(at(format!(
                        "CPU {cpu} does not exist here (possible CPUs: {})",
                        cpulist::format(possible)
                    )));
                }
                if !online.contains(cpu) {
                    return Err(at(format!(
                        "CPU {cpu} is offline (online CPUs: {})",
                        cpulist::format(online)
                    )));
                }
            }
            if matches!(c.knob, Knob::IrqAffinity { .. }) && value.cpus().is_empty() {
                return Err(at("an IRQ needs at least one CPU".into()));
            }
            if let (Some((low, high, why)), Value::Count(n)) = (c.knob.count_range(), &value) {
                if *n < low || *n > high {
                    return Err(at(format!("{n} is outside {low}..={high} ({why})")));
                }
            }
        }
        Ok(plan)
    }

    /// The human diff: one line per write.
    pub fn diff(&self) -> String {
        let mut out = String::new();
        if self.changes.is_empty() {
            out.push_str("No changes: the current steering already matches the policy.\n");
        }
        for c in &self.changes {
            let kind = c.knob.value_kind();
            let show = |v: &str| {
                Value::parse(kind, v)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| v.to_string())
            };
            out.push_str(&format!(
                "  {}: {} -> {}   ({} -> {})\n      why: {}\n      evidence: {}\n",
                c.path,
                c.current,
                c.proposed,
                show(&c.current),
                show(&c.proposed),
                c.reason,
                c.evidence
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

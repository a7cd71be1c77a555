//! NAPI instances: the units of receive (and transmit completion) processing the kernel polls,
//! each with the queues it serves, the IRQ that schedules it, where it runs, and its
//! deferral settings. From netdev-genl (`napi-get`, `queue-get`; Linux 6.8+, the settings
//! 6.13+, `threaded` per NAPI 6.17+) on the live machine; per device from sysfs before that.

use serde::{Deserialize, Serialize};

/// One NAPI instance as netdev-genl reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Napi {
    pub id: u32,
    pub device: String,
    pub ifindex: u32,
    pub rx_queues: Vec<u32>,
    pub tx_queues: Vec<u32>,
    /// The IRQ that schedules it: as netdev-genl says (drivers that call
    /// netif_napi_set_irq), else the IRQ of its rx queue as /proc/interrupts names it
    /// (`irq_from_queue`).
    pub irq: Option<u32>,
    #[serde(default)]
    pub irq_from_queue: bool,
    /// CPUs it runs on: its kthread's allowed CPUs when threaded, else its IRQ's effective
    /// CPUs (a softirq runs where its IRQ did).
    pub cpus: Vec<u32>,
    /// The kthread's pid when it is threaded.
    pub pid: Option<u32>,
    pub threaded: Option<bool>,
    pub defer_hard_irqs: Option<u32>,
    pub gro_flush_timeout_ns: Option<u64>,
    pub irq_suspend_timeout_ns: Option<u64>,
}

/// The NAPI instances of the devices irqtune looks at, and where the figures come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NapiTopology {
    /// "netdev-genl", or why it could not be read ("netdev-genl: not in this kernel").
    pub source: String,
    pub napis: Vec<Napi>,
}

/// A NAPI instance's own setting, set through netdev-genl `napi-set` (Linux 6.13+): per NAPI
/// where the sysfs files of the same names set every NAPI of a device.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NapiParam {
    /// Empty polls before the NAPI's IRQ is re-armed (napi_defer_hard_irqs).
    DeferHardIrqs,
    /// ns: the timer that polls while IRQs are deferred (gro_flush_timeout).
    GroFlushTimeout,
    /// ns: how long IRQs stay suspended while an application's busy polling finds events.
    IrqSuspendTimeout,
}

impl NapiParam {
    pub const ALL: [NapiParam; 3] = [
        NapiParam::DeferHardIrqs,
        NapiParam::GroFlushTimeout,
        NapiParam::IrqSuspendTimeout,
    ];

    /// netdev-genl's attribute name.
    pub fn name(self) -> &'static str {
        match self {
            NapiParam::DeferHardIrqs => "defer-hard-irqs",
            NapiParam::GroFlushTimeout => "gro-flush-timeout",
            NapiParam::IrqSuspendTimeout => "irq-suspend-timeout",
        }
    }

    /// Its value in a NAPI as read.
    pub fn of(self, n: &Napi) -> Option<u64> {
        match self {
            NapiParam::DeferHardIrqs => n.defer_hard_irqs.map(u64::from),
            NapiParam::GroFlushTimeout => n.gro_flush_timeout_ns,
            NapiParam::IrqSuspendTimeout => n.irq_suspend_timeout_ns,
        }
    }
}

//! A NIC's channels, ring sizes and interrupt coalescing (ethtool-netlink: CHANNELS_GET,
//! RINGS_GET, COALESCE_GET; Documentation/networking/ethtool-netlink.rst). Read from the
//! kernel on the live machine only: a captured tree has no netlink, and says so.

use serde::{Deserialize, Serialize};

/// Queue counts by kind: current and the driver's maximum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Channels {
    pub combined: Option<u32>,
    pub combined_max: Option<u32>,
    pub rx: Option<u32>,
    pub rx_max: Option<u32>,
    pub tx: Option<u32>,
    pub tx_max: Option<u32>,
}

/// Descriptor ring sizes: current and maximum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rings {
    pub rx: Option<u32>,
    pub rx_max: Option<u32>,
    pub tx: Option<u32>,
    pub tx_max: Option<u32>,
}

/// Interrupt coalescing: the parameters the driver reports (those it supports).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Coalesce {
    pub adaptive_rx: Option<bool>,
    pub adaptive_tx: Option<bool>,
    pub rx_usecs: Option<u32>,
    pub rx_frames: Option<u32>,
    pub tx_usecs: Option<u32>,
    pub tx_frames: Option<u32>,
}

/// What ethtool-netlink says of one NIC; each part None with the reason in `unavailable`
/// when the driver does not support it or it could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NicLayer {
    pub channels: Option<Channels>,
    pub rings: Option<Rings>,
    pub coalesce: Option<Coalesce>,
    /// "coalesce: not supported by the driver", "channels: Permission denied".
    pub unavailable: Vec<String>,
}

/// A channel kind ethtool sets.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Combined,
    Rx,
    Tx,
}

/// A ring ethtool sizes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RingKind {
    Rx,
    Tx,
}

/// A coalescing parameter ethtool sets.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CoalesceParam {
    AdaptiveRx,
    AdaptiveTx,
    RxUsecs,
    RxFrames,
    TxUsecs,
    TxFrames,
}

impl ChannelKind {
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Combined => "combined",
            ChannelKind::Rx => "rx",
            ChannelKind::Tx => "tx",
        }
    }
}

impl RingKind {
    pub fn name(self) -> &'static str {
        match self {
            RingKind::Rx => "rx",
            RingKind::Tx => "tx",
        }
    }
}

impl CoalesceParam {
    pub const ALL: [CoalesceParam; 6] = [
        CoalesceParam::AdaptiveRx,
        CoalesceParam::AdaptiveTx,
        CoalesceParam::RxUsecs,
        CoalesceParam::RxFrames,
        CoalesceParam::TxUsecs,
        CoalesceParam::TxFrames,
    ];

    /// ethtool's own name for it ("rx-usecs").
    pub fn name(self) -> &'static str {
        match self {
            CoalesceParam::AdaptiveRx => "adaptive-rx",
            CoalesceParam::AdaptiveTx => "adaptive-tx",
            CoalesceParam::RxUsecs => "rx-usecs",
            CoalesceParam::RxFrames => "rx-frames",
            CoalesceParam::TxUsecs => "tx-usecs",
            CoalesceParam::TxFrames => "tx-frames",
        }
    }

    /// Adaptive switches are 0/1.
    pub fn is_switch(self) -> bool {
        matches!(self, CoalesceParam::AdaptiveRx | CoalesceParam::AdaptiveTx)
    }
}

impl Channels {
    pub fn get(&self, k: ChannelKind) -> Option<u32> {
        match k {
            ChannelKind::Combined => self.combined,
            ChannelKind::Rx => self.rx,
            ChannelKind::Tx => self.tx,
        }
    }

    pub fn max(&self, k: ChannelKind) -> Option<u32> {
        match k {
            ChannelKind::Combined => self.combined_max,
            ChannelKind::Rx => self.rx_max,
            ChannelKind::Tx => self.tx_max,
        }
    }
}

impl Rings {
    pub fn get(&self, k: RingKind) -> Option<u32> {
        match k {
            RingKind::Rx => self.rx,
            RingKind::Tx => self.tx,
        }
    }

    pub fn max(&self, k: RingKind) -> Option<u32> {
        match k {
            RingKind::Rx => self.rx_max,
            RingKind::Tx => self.tx_max,
        }
    }
}

impl Coalesce {
    /// The value as a count (switches 0/1).
    pub fn get(&self, p: CoalesceParam) -> Option<u32> {
        match p {
            CoalesceParam::AdaptiveRx => self.adaptive_rx.map(u32::from),
            CoalesceParam::AdaptiveTx => self.adaptive_tx.map(u32::from),
            CoalesceParam::RxUsecs => self.rx_usecs,
            CoalesceParam::RxFrames => self.rx_frames,
            CoalesceParam::TxUsecs => self.tx_usecs,
            CoalesceParam::TxFrames => self.tx_frames,
        }
    }
}

/// One value a NIC reports: a channel count or ring size with its maximum, or a coalescing
/// parameter (switches as 0/1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerValue {
    /// "channels" or "ring"; None for a coalescing parameter.
    pub group: Option<&'static str>,
    /// "combined", "rx", "tx", or ethtool's name of the parameter ("rx-usecs").
    pub name: &'static str,
    pub current: u32,
    pub max: Option<u32>,
    /// An on/off switch (adaptive coalescing).
    pub switch: bool,
}

impl NicLayer {
    /// Every value the NIC reported, channels, then rings, then coalescing: the one walk
    /// the reports and the metrics share.
    pub fn values(&self) -> Vec<LayerValue> {
        let mut out = Vec::new();
        let sized = |group, name, current: Option<u32>, max| {
            current.map(|current| LayerValue {
                group: Some(group),
                name,
                current,
                max,
                switch: false,
            })
        };
        if let Some(c) = &self.channels {
            for k in [ChannelKind::Combined, ChannelKind::Rx, ChannelKind::Tx] {
                out.extend(sized("channels", k.name(), c.get(k), c.max(k)));
            }
        }
        if let Some(r) = &self.rings {
            for k in [RingKind::Rx, RingKind::Tx] {
                out.extend(sized("ring", k.name(), r.get(k), r.max(k)));
            }
        }
        if let Some(c) = &self.coalesce {
            for p in CoalesceParam::ALL {
                out.extend(c.get(p).map(|current| LayerValue {
                    group: None,
                    name: p.name(),
                    current,
                    max: None,
                    switch: p.is_switch(),
                }));
            }
        }
        out
    }
}

//! Just enough of a BTF reader to find struct member offsets in the running kernel
//! (Documentation/bpf/btf.rst), so the probes read `struct sock`, `sk_buff`, `napi_struct`
//! and `net_device` fields at this kernel's offsets rather than compiled-in ones.

use std::{collections::HashMap, path::Path};

use irq_ebpf::KernelOffsets;

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF struct {0} has no member {1}")]
    NoMember(String, String),
    #[error("BTF member {0}.{1} is a bitfield")]
    Bitfield(String, String),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    offset: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    kind_flag: bool,
    /// Referenced type, for modifiers and typedefs.
    type_id: u32,
    members: Vec<Member>,
}

pub struct Btf {
    strings: Vec<u8>,
    /// Index 0 is BTF's `void`.
    types: Vec<Type>,
    structs: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses little-endian BTF (the only kind x86_64 and arm64 kernels expose).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let tdata = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;

        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            kind_flag: false,
            type_id: 0,
            members: vec![],
        }];
        let mut at = 0;
        while at < tdata.len() {
            let name_off = u32_at(tdata, at)?;
            let info = u32_at(tdata, at + 4)?;
            let size_or_type = u32_at(tdata, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_ARRAY => at += 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        members.push(Member {
                            name_off: u32_at(tdata, m)?,
                            type_id: u32_at(tdata, m + 4)?,
                            offset: u32_at(tdata, m + 8)?,
                        });
                    }
                    at += vlen * 12;
                }
                KIND_ENUM | KIND_FUNC_PROTO => at += vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => at += vlen * 12,
                0..=KIND_TYPE_TAG => {}
                _ => return Err(BtfError::Malformed("unknown type kind")),
            }
            types.push(Type {
                name_off,
                kind,
                kind_flag: info >> 31 == 1,
                type_id: size_or_type,
                members,
            });
        }
        let mut btf = Btf {
            strings,
            types,
            structs: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name_off != 0 {
                let name = btf.name(t.name_off).to_string();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.type_id
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Bit offset of `member` in the struct/union `t`, looking through anonymous members.
    fn find_bits(&self, t: &Type, member: &str, depth: u32) -> Option<(u32, bool)> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            let (bits, bitfield) = if t.kind_flag {
                (m.offset & 0x00ff_ffff, m.offset >> 24 != 0)
            } else {
                (m.offset, false)
            };
            if m.name_off != 0 {
                if self.name(m.name_off) == member {
                    return Some((bits, bitfield));
                }
                continue;
            }
            let inner = self.resolve(m.type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                if let Some((b, bf)) = self.find_bits(inner, member, depth + 1) {
                    return Some((bits + b, bf));
                }
            }
        }
        None
    }

    /// Byte offset of `member` in `struct name`.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))?;
        let t = &self.types[id as usize];
        match self.find_bits(t, member, 0) {
            Some((_, true)) => Err(BtfError::Bitfield(name.to_string(), member.to_string())),
            Some((bits, false)) if bits % 8 == 0 => Ok(bits / 8),
            Some(_) => Err(BtfError::Bitfield(name.to_string(), member.to_string())),
            None => Err(BtfError::NoMember(name.to_string(), member.to_string())),
        }
    }

    /// The offsets the probes need (see [`KernelOffsets`]).
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        Ok(KernelOffsets {
            napi_dev: self.member_offset("napi_struct", "dev")?,
            netdev_name: self.member_offset("net_device", "name")?,
            netdev_ifindex: self.member_offset("net_device", "ifindex")?,
            skb_dev: self.member_offset("sk_buff", "dev")?,
            skb_len: self.member_offset("sk_buff", "len")?,
            skc_daddr: self.member_offset("sock_common", "skc_daddr")?,
            skc_rcv_saddr: self.member_offset("sock_common", "skc_rcv_saddr")?,
            skc_dport: self.member_offset("sock_common", "skc_dport")?,
            skc_num: self.member_offset("sock_common", "skc_num")?,
            skc_family: self.member_offset("sock_common", "skc_family")?,
            skc_v6_daddr: self.member_offset("sock_common", "skc_v6_daddr")?,
            skc_v6_rcv_saddr: self.member_offset("sock_common", "skc_v6_rcv_saddr")?,
            // `struct sock` starts with `struct sock_common __sk_common`, so sock_common
            // offsets hold for a `struct sock *`.
            sk_protocol: self.member_offset("sock", "sk_protocol")?,
            sk_wq: self.member_offset("sock", "sk_wq")?,
            socket_wq_wait: self.member_offset("socket_wq", "wait")?,
            wait_queue_head_head: self.member_offset("wait_queue_head", "head")?,
            socket_sk: self.member_offset("socket", "sk")?,
            // Absent without CONFIG_NET_RX_BUSY_POLL: 0 tells the probes not to read it.
            sk_napi_id: self.member_offset("sock", "sk_napi_id").unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct outer { int a; union { int b; struct { int c; int d; }; }; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0d\0";
        let s = |name: &str| {
            let pos = strings
                .windows(name.len() + 1)
                .position(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0);
            pos.unwrap() as u32
        };
        let mut types: Vec<u32> = Vec::new();
        // 1: int, 4 bytes
        types.extend([s("int"), KIND_INT << 24, 4, 32]);
        // 2: anonymous struct { c @0, d @32 }
        types.extend([0, (KIND_STRUCT << 24) | 2, 8, s("c"), 1, 0, s("d"), 1, 32]);
        // 3: anonymous union { b @0, <struct 2> @0 }
        types.extend([0, (KIND_UNION << 24) | 2, 8, s("b"), 1, 0, 0, 2, 0]);
        // 4: struct outer { a @0, <union 3> @32 }
        types.extend([
            s("outer"),
            (KIND_STRUCT << 24) | 2,
            12,
            s("a"),
            1,
            0,
            0,
            3,
            32,
        ]);
        let tbytes: Vec<u8> = types.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24u32,
            0,
            tbytes.len() as u32,
            tbytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(tbytes);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_structs() {
        let btf = Btf::parse(&blob()).expect("parse");
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 4);
        assert_eq!(btf.member_offset("outer", "c").unwrap(), 4);
        assert_eq!(btf.member_offset("outer", "d").unwrap(), 8);
        assert!(matches!(
            btf.member_offset("outer", "e"),
            Err(BtfError::NoMember(..))
        ));
        assert!(matches!(
            btf.member_offset("inner", "a"),
            Err(BtfError::NoStruct(..))
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, not at all.").is_err());
        let mut truncated = blob();
        truncated.truncate(40);
        assert!(Btf::parse(&truncated).is_err());
    }
}

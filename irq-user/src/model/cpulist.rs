//! CPU sets as the kernel writes them: lists ("0-3,8,10-11", cpulist_parse in lib/bitmap.c)
//! and hex masks ("ff,ffffffff", comma-separated 32-bit groups, bitmap_parse and `%*pb`), as
//! in smp_affinity, rps_cpus and xps_cpus.

/// CPU numbers irqtune accepts: below 8192, the largest NR_CPUS a Linux kernel is built with
/// (x86_64 CONFIG_MAXSMP). A larger number in a file or an argument is a mistake or an
/// attack, and must not make irqtune allocate a set of billions of CPUs.
pub const MAX_CPUS: u32 = 8192;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuListError {
    #[error("CPU {0} is beyond the {MAX_CPUS} CPUs any Linux machine has")]
    TooLarge(u64),
    #[error("empty CPU list")]
    Empty,
    #[error("bad CPU list item {0:?}: expected N or N-M, e.g. 0-3,8")]
    Item(String),
    #[error("bad CPU range {0}-{1}: the end is below the start")]
    Reversed(u32, u32),
    #[error("bad CPU mask {0:?}: expected hex digits in comma-separated 32-bit groups, e.g. ff,ffffffff")]
    Mask(String),
}

/// Parses a hex CPU mask ("3", "00000000,00000001", "ff,ffffffff") into sorted CPU numbers.
/// An all-zero mask is the empty set (rps_cpus "0" means RPS off).
pub fn parse_mask(text: &str) -> Result<Vec<u32>, CpuListError> {
    let text = text.trim();
    let bad = || CpuListError::Mask(text.to_string());
    if text.is_empty() {
        return Err(bad());
    }
    let groups: Vec<&str> = text.split(',').collect();
    if groups.len() > (MAX_CPUS / 32) as usize {
        return Err(CpuListError::TooLarge(groups.len() as u64 * 32 - 1));
    }
    let mut cpus = Vec::new();
    for (i, group) in groups.iter().rev().enumerate() {
        // bitmap_parse takes groups of up to 8 digits; a lone group may be longer (a mask
        // of up to MAX_CPUS bits written without commas).
        if group.is_empty()
            || group.len() > 8 && groups.len() > 1
            || group.len() > (MAX_CPUS / 4) as usize
        {
            return Err(bad());
        }
        let digits = group.as_bytes();
        for (j, d) in digits.iter().rev().enumerate() {
            let v = (*d as char).to_digit(16).ok_or_else(bad)?;
            for bit in 0..4 {
                if v & (1 << bit) != 0 {
                    cpus.push(i as u32 * 32 + j as u32 * 4 + bit);
                }
            }
        }
    }
    cpus.sort_unstable();
    Ok(cpus)
}

/// Formats CPUs as the kernel prints a mask of `nbits` bits (nr_cpu_ids): 32-bit groups of 8
/// hex digits separated by commas, the most significant group only as wide as it needs to be
/// ("3" for 2 CPUs, "ffffffff,ffffffff" for 64, "ff,ffffffff,ffffffff" for 72).
pub fn format_mask(cpus: &[u32], nbits: u32) -> String {
    // CPU numbers come from parsers that cap them at MAX_CPUS; the cap here keeps a caller
    // that did not from allocating or overflowing.
    let cpus: Vec<u32> = cpus.iter().copied().filter(|&c| c < MAX_CPUS).collect();
    let top = cpus.iter().copied().max().map_or(0, |c| c + 1);
    let nbits = nbits.min(MAX_CPUS).max(top).max(1);
    let ngroups = nbits.div_ceil(32) as usize;
    let mut words = vec![0u32; ngroups];
    for &c in &cpus {
        words[(c / 32) as usize] |= 1 << (c % 32);
    }
    let first_width = match nbits % 32 {
        0 => 8,
        r => r.div_ceil(4) as usize,
    };
    let mut out = Vec::with_capacity(ngroups);
    for (i, w) in words.iter().enumerate().rev() {
        let width = if i == ngroups - 1 { first_width } else { 8 };
        out.push(format!("{w:0width$x}"));
    }
    out.join(",")
}

/// Parses a CPU list into sorted, deduplicated CPU numbers.
pub fn parse(text: &str) -> Result<Vec<u32>, CpuListError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CpuListError::Empty);
    }
    let mut cpus = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let num = |s: &str| {
            let n = s
                .trim()
                .parse::<u64>()
                .map_err(|_| CpuListError::Item(item.to_string()))?;
            if n >= MAX_CPUS as u64 {
                return Err(CpuListError::TooLarge(n));
            }
            Ok(n as u32)
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(CpuListError::Reversed(a, b));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(item)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Formats CPU numbers as a compact list ("0-3,8").
pub fn format(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(parse("0-3,8,10-11").unwrap(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(format(&[11, 10, 8, 3, 2, 1, 0]), "0-3,8,10-11");
        assert_eq!(parse(" 1 ").unwrap(), vec![1]);
        assert_eq!(parse("1,1,0").unwrap(), vec![0, 1]);
    }

    #[test]
    fn masks_match_the_kernel_format() {
        assert_eq!(format_mask(&[0, 1], 2), "3");
        assert_eq!(format_mask(&[], 2), "0");
        assert_eq!(format_mask(&[0], 8), "01");
        assert_eq!(format_mask(&[0, 63], 64), "80000000,00000001");
        let all: Vec<u32> = (0..72).collect();
        assert_eq!(format_mask(&all, 72), "ff,ffffffff,ffffffff");
        assert_eq!(format_mask(&[40], 48), "0100,00000000");
        assert_eq!(
            format_mask(&[33], 128),
            "00000000,00000000,00000002,00000000"
        );
        for (cpus, n) in [
            (vec![1, 5, 33, 47], 48),
            (vec![0, 31, 32, 95], 96),
            (vec![], 64),
        ] {
            assert_eq!(parse_mask(&format_mask(&cpus, n)).unwrap(), cpus);
        }
        assert_eq!(parse_mask("00000000,00000001").unwrap(), vec![0]);
        assert_eq!(parse_mask("f0").unwrap(), vec![4, 5, 6, 7]);
        assert!(parse_mask("xyz").is_err());
        assert!(parse_mask("1,,2").is_err());
        assert!(parse_mask("").is_err());
        assert!(parse_mask("123456789,0").is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(parse(""), Err(CpuListError::Empty));
        assert_eq!(parse("a"), Err(CpuListError::Item("a".into())));
        assert_eq!(parse("3-1"), Err(CpuListError::Reversed(3, 1)));
        assert!(parse("0-").is_err());
    }

    #[test]
    fn huge_cpu_numbers_are_refused_not_allocated() {
        // Each of these once panicked or asked for gigabytes.
        assert_eq!(
            parse("0-4294967295"),
            Err(CpuListError::TooLarge(4294967295))
        );
        assert_eq!(parse("4294967295"), Err(CpuListError::TooLarge(4294967295)));
        assert_eq!(parse("0-99999999"), Err(CpuListError::TooLarge(99999999)));
        assert_eq!(
            parse("99999999999999999999"),
            Err(CpuListError::Item("99999999999999999999".into()))
        );
        assert_eq!(parse("8191").unwrap(), vec![8191]);
        assert!(parse_mask(&"f".repeat(10_000)).is_err());
        assert!(parse_mask(&vec!["ffffffff"; 300].join(",")).is_err());
        assert_eq!(
            parse_mask(&vec!["ffffffff"; 256].join(",")).unwrap().len(),
            8192
        );
        assert_eq!(
            format_mask(&[u32::MAX], u32::MAX).len(),
            MAX_CPUS as usize / 32 * 9 - 1
        );
        assert_eq!(format_mask(&[u32::MAX, 1], 2), "2");
    }
}

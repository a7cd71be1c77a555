//! CPU lists as the kernel writes them ("0-3,8,10-11": cpulist_parse in lib/bitmap.c).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuListError {
    #[error("empty CPU list")]
    Empty,
    #[error("bad CPU list item {0:?}: expected N or N-M, e.g. 0-3,8")]
    Item(String),
    #[error("bad CPU range {0}-{1}: the end is below the start")]
    Reversed(u32, u32),
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
            s.trim()
                .parse::<u32>()
                .map_err(|_| CpuListError::Item(item.to_string()))
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
    fn rejects_bad_input() {
        assert_eq!(parse(""), Err(CpuListError::Empty));
        assert_eq!(parse("a"), Err(CpuListError::Item("a".into())));
        assert_eq!(parse("3-1"), Err(CpuListError::Reversed(3, 1)));
        assert!(parse("0-").is_err());
    }
}

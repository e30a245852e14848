//! A stable share of a suite's runs, for CI jobs that split it:
//! `--partition K/N` (or `MFLAB_PARTITION=K/N`) keeps the runs whose
//! (scenario name, backend) hashes to share K of N.
//!
//! Each run's share depends only on its own name and backend (FNV-1a, not
//! std's seeded hasher), so adding or removing a scenario moves no other
//! run, and every machine and every release agrees on the split.

use std::fmt;
use std::str::FromStr;

/// Share `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    index: u32,
    count: u32,
}

impl Partition {
    pub fn new(index: u32, count: u32) -> Result<Self, PartitionError> {
        if count == 0 || index == 0 || index > count {
            return Err(PartitionError::NoSuchShare { index, count });
        }
        Ok(Partition { index, count })
    }

    /// Whether the run of `scenario` under `backend` is in this share.
    pub fn contains(self, scenario: &str, backend: &str) -> bool {
        share_of(scenario, backend, self.count) == self.index
    }
}

/// The 1-based share of `count` a run falls in.
pub fn share_of(scenario: &str, backend: &str, count: u32) -> u32 {
    (fnv1a(&[scenario.as_bytes(), b"\0", backend.as_bytes()]) % u64::from(count)) as u32 + 1
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A `--partition` that names no share.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("partition {index}/{count} does not exist; write K/N with 1 <= K <= N, e.g. 1/3")]
    NoSuchShare { index: u32, count: u32 },
    #[error("'{0}' is not a partition; write K/N with 1 <= K <= N, e.g. 1/3")]
    Unreadable(String),
}

impl FromStr for Partition {
    type Err = PartitionError;

    fn from_str(s: &str) -> Result<Self, PartitionError> {
        let bad = || PartitionError::Unreadable(s.to_string());
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        Partition::new(k, n)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs() -> Vec<(String, &'static str)> {
        (0..40)
            .map(|i| format!("scenario-{i}"))
            .flat_map(|s| [(s.clone(), "mflab"), (s, "libvirt")])
            .collect()
    }

    #[test]
    fn the_shares_cover_every_run_once() {
        let runs = runs();
        for n in 1..=5 {
            for (scenario, backend) in &runs {
                let holders = (1..=n)
                    .filter(|&k| Partition::new(k, n).unwrap().contains(scenario, backend))
                    .count();
                assert_eq!(
                    holders, 1,
                    "{scenario} {backend} in {holders} of {n} shares"
                );
            }
        }
    }

    #[test]
    fn shares_are_not_empty_and_not_lopsided() {
        let runs = runs();
        for n in 2..=5 {
            for k in 1..=n {
                let p = Partition::new(k, n).unwrap();
                let size = runs.iter().filter(|(s, b)| p.contains(s, b)).count();
                assert!(
                    size >= runs.len() / n as usize / 3,
                    "{p}: {size} of {}",
                    runs.len()
                );
            }
        }
    }

    #[test]
    fn a_run_keeps_its_share_across_releases() {
        // Fixed values: a change of hash would split CI jobs differently.
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(share_of("x", "mflab", 1), 1);
    }

    #[test]
    fn bad_partitions_say_what_to_write() {
        for bad in ["0/3", "4/3", "x/y", "3", "1/0", "-1/3", ""] {
            let e = bad.parse::<Partition>().unwrap_err();
            assert!(e.to_string().contains("write K/N"), "{bad}: {e}");
        }
        assert_eq!(
            "4/3".parse::<Partition>().unwrap_err(),
            PartitionError::NoSuchShare { index: 4, count: 3 }
        );
        assert_eq!(
            "2/3".parse::<Partition>().unwrap(),
            Partition::new(2, 3).unwrap()
        );
        assert_eq!(" 3/3 ".parse::<Partition>().unwrap().to_string(), "3/3");
    }
}

//! The archived WAL chain of a cell: per timeline, the first and last
//! segment and every gap, so `pg check` can say exactly what is missing.

use std::collections::BTreeMap;

use serde::Serialize;

use lifeboat_repository::{format, RepoError, Repository};

use crate::archive::WAL_PREFIX;
use crate::walname::{segment_name, WalFile};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Gap {
    /// First missing segment.
    pub from: String,
    /// Last missing segment.
    pub to: String,
    pub segments: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineChain {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
    pub gaps: Vec<Gap>,
    pub partial: Vec<String>,
    pub has_history: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub cell: String,
    pub timelines: Vec<TimelineChain>,
    /// Files kept after a content conflict on push.
    pub conflicts: Vec<String>,
}

impl ChainReport {
    pub fn has_gaps(&self) -> bool {
        self.timelines.iter().any(|t| !t.gaps.is_empty())
    }
}

pub async fn check(repo: &Repository, cell: &str) -> Result<ChainReport, RepoError> {
    format::validate_cell(cell)?;
    let prefix = format!("{WAL_PREFIX}{cell}/");
    let mut segments: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut partial: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut histories = Vec::new();
    let mut conflicts = Vec::new();
    for meta in repo.store().list(&prefix).await? {
        let name = &meta.path.as_str()[prefix.len()..];
        if name.starts_with("conflicts/") {
            conflicts.push(name.to_string());
            continue;
        }
        match WalFile::parse(name) {
            Some(WalFile::Segment { timeline, segno }) => segments.entry(timeline).or_default().push(segno),
            Some(f @ WalFile::Partial { timeline, .. }) => partial.entry(timeline).or_default().push(f.to_string()),
            Some(WalFile::History { timeline }) => histories.push(timeline),
            _ => {}
        }
    }
    let mut timelines = Vec::new();
    for (timeline, mut segnos) in segments {
        segnos.sort_unstable();
        let mut gaps = Vec::new();
        for pair in segnos.windows(2) {
            if pair[1] > pair[0] + 1 {
                gaps.push(Gap {
                    from: segment_name(timeline, pair[0] + 1),
                    to: segment_name(timeline, pair[1] - 1),
                    segments: pair[1] - pair[0] - 1,
                });
            }
        }
        timelines.push(TimelineChain {
            timeline,
            first: segment_name(timeline, segnos[0]),
            last: segment_name(timeline, *segnos.last().unwrap()),
            segments: segnos.len() as u64,
            gaps,
            partial: partial.remove(&timeline).unwrap_or_default(),
            has_history: histories.contains(&timeline),
        });
    }
    Ok(ChainReport { cell: cell.into(), timelines, conflicts })
}

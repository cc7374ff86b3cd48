//! Who holds a lock: the host name for people, and, on Linux, an identity
//! exact enough to tell that the holding process is gone.
//!
//! A process is named by the kernel's boot id, its PID namespace, its pid
//! and its start time (in clock ticks since boot, field 22 of
//! `/proc/PID/stat`). Another process that shares the boot and the PID
//! namespace sees the same `/proc`, so it can say for certain whether that
//! process still runs: a pid that is missing, or reused by a process that
//! started at another time, means the holder is dead (killed with
//! `kill -9`, or its host rebooted). Anything else (another host, another
//! container, no `/proc`) proves nothing, and the lock's lease decides.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub boot_id: String,
    pub pid_namespace: String,
    pub pid: u32,
    pub start_ticks: u64,
}

impl Process {
    /// This process, when `/proc` tells enough.
    pub fn current() -> Option<Process> {
        let pid = std::process::id();
        Some(Process { boot_id: boot_id()?, pid_namespace: pid_namespace()?, pid, start_ticks: start_ticks(pid)? })
    }

    /// True only when this process can prove `self` is no longer running.
    pub fn is_gone(&self) -> bool {
        let Some(me) = Process::current() else { return false };
        if me.pid_namespace != self.pid_namespace {
            return false;
        }
        if me.boot_id != self.boot_id {
            // Same namespace inode under another boot: the holder died with that boot.
            return true;
        }
        start_ticks(self.pid) != Some(self.start_ticks)
    }
}

/// `HOSTNAME pid N`, for people reading a lock.
pub fn describe() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{} pid {}", host.trim(), std::process::id())
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|s| !s.is_empty())
}

fn pid_namespace() -> Option<String> {
    Some(std::fs::read_link("/proc/self/ns/pid").ok()?.to_string_lossy().into_owned())
}

/// Field 22 of `/proc/PID/stat`; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_not_gone_and_a_dead_one_is() {
        let me = Process::current().expect("Linux /proc");
        assert!(!me.is_gone());
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let other = Process { pid: child.id(), start_ticks: start_ticks(child.id()).unwrap(), ..me.clone() };
        assert!(!other.is_gone());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(other.is_gone(), "a reaped process is gone");
        assert!(Process { start_ticks: me.start_ticks + 1, ..me.clone() }.is_gone(), "a reused pid is another process");
        assert!(Process { boot_id: "another boot".into(), ..me.clone() }.is_gone());
        assert!(!Process { pid_namespace: "pid:[1]".into(), pid: 999_999, ..me }.is_gone(), "another namespace proves nothing");
    }
}

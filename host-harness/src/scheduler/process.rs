//! Which local process runs a run, told apart well enough to say for sure
//! that it has ended: its pid, the boot it ran in, its pid namespace and
//! its start time (a pid is reused; a start time in clock ticks after boot
//! is not, within one boot). Linux only: elsewhere nothing is known and no
//! run is ever taken to have ended by this.

use std::path::Path;

/// A process as the run log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalProcess {
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    pub boot_id: String,
    /// `/proc/self/ns/pid`: a pid means the same process only within one
    /// namespace (containers sharing a data directory do not see each other's).
    pub pid_ns: String,
    /// Field 22 of `/proc/<pid>/stat`.
    pub started: u64,
}

/// What can be said about a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Still running here (or at least: a process with its pid and start time is).
    Running,
    /// Certainly gone: same boot and namespace, and no such process (or a zombie).
    Ended,
    /// Another boot, machine or namespace, or /proc cannot tell.
    Unknown,
}

impl LocalProcess {
    /// This process; None where /proc does not say.
    pub fn current() -> Option<LocalProcess> {
        Self::at(Path::new("/proc"), std::process::id())
    }

    /// Another process of this machine, as it would record itself.
    #[cfg(test)]
    pub(crate) fn of(pid: u32) -> Option<LocalProcess> {
        Self::at(Path::new("/proc"), pid)
    }

    fn at(proc: &Path, pid: u32) -> Option<LocalProcess> {
        let (_, started) = parse_stat(&std::fs::read_to_string(proc.join(pid.to_string()).join("stat")).ok()?)?;
        Some(LocalProcess { pid, boot_id: boot_id(proc)?, pid_ns: pid_ns(proc)?, started })
    }

    pub fn liveness(&self) -> Liveness {
        self.liveness_in(Path::new("/proc"))
    }

    fn liveness_in(&self, proc: &Path) -> Liveness {
        if boot_id(proc).as_deref() != Some(self.boot_id.as_str()) || pid_ns(proc).as_deref() != Some(&self.pid_ns) {
            return Liveness::Unknown;
        }
        match std::fs::read_to_string(proc.join(self.pid.to_string()).join("stat")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Liveness::Ended,
            Err(_) => Liveness::Unknown,
            Ok(text) => match parse_stat(&text) {
                // A zombie has ended; only its parent has not looked yet.
                Some((state, _)) if state == 'Z' || state == 'X' => Liveness::Ended,
                // Same pid, another start: the pid was reused.
                Some((_, started)) if started != self.started => Liveness::Ended,
                Some(_) => Liveness::Running,
                None => Liveness::Unknown,
            },
        }
    }
}

fn boot_id(proc: &Path) -> Option<String> {
    let id = std::fs::read_to_string(proc.join("sys/kernel/random/boot_id")).ok()?;
    Some(id.trim().to_string()).filter(|id| !id.is_empty())
}

fn pid_ns(proc: &Path) -> Option<String> {
    let link = std::fs::read_link(proc.join("self/ns/pid")).ok()?;
    Some(link.to_string_lossy().into_owned()).filter(|l| !l.is_empty())
}

/// State (field 3) and start time (field 22) from `/proc/<pid>/stat`. The
/// command name (field 2) may hold spaces and parentheses: fields are
/// counted after its last `)`.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let started = fields.get(19)?.parse().ok()?;
    Some((state, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(comm: &str, state: char, started: u64) -> String {
        format!("4242 ({comm}) {state} 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 {started} 1000 200 0")
    }

    /// A directory of its own under the system's temporary one, removed on drop.
    struct Scratch(std::path::PathBuf);
    impl Scratch {
        fn new() -> Scratch {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("fake-proc-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A /proc with a boot id, a pid namespace and the given processes.
    fn fake_proc(boot: &str, ns: &str, processes: &[(u32, String)]) -> Scratch {
        let dir = Scratch::new();
        std::fs::create_dir_all(dir.path().join("sys/kernel/random")).unwrap();
        std::fs::write(dir.path().join("sys/kernel/random/boot_id"), format!("{boot}\n")).unwrap();
        std::fs::create_dir_all(dir.path().join("self/ns")).unwrap();
        std::os::unix::fs::symlink(ns, dir.path().join("self/ns/pid")).unwrap();
        for (pid, text) in processes {
            std::fs::create_dir_all(dir.path().join(pid.to_string())).unwrap();
            std::fs::write(dir.path().join(pid.to_string()).join("stat"), text).unwrap();
        }
        dir
    }

    fn recorded(pid: u32, started: u64) -> LocalProcess {
        LocalProcess { pid, boot_id: "boot-1".into(), pid_ns: "pid:[1]".into(), started }
    }

    #[test]
    fn the_start_time_is_read_after_the_last_parenthesis_of_the_command_name() {
        assert_eq!(parse_stat(&stat("connector", 'S', 777)), Some(('S', 777)));
        assert_eq!(parse_stat(&stat("a) b (c) R", 'R', 9)), Some(('R', 9)));
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn only_a_process_that_is_certainly_gone_has_ended() {
        let proc = fake_proc(
            "boot-1",
            "pid:[1]",
            &[(10, stat("connector", 'S', 500)), (11, stat("connector", 'Z', 600)), (12, stat("other", 'S', 999))],
        );
        assert_eq!(recorded(10, 500).liveness_in(proc.path()), Liveness::Running);
        assert_eq!(recorded(11, 600).liveness_in(proc.path()), Liveness::Ended, "a zombie");
        assert_eq!(recorded(12, 700).liveness_in(proc.path()), Liveness::Ended, "the pid was reused");
        assert_eq!(recorded(13, 700).liveness_in(proc.path()), Liveness::Ended, "no such pid");
        // Another boot (or machine) or another pid namespace: nothing is known.
        let rebooted = fake_proc("boot-2", "pid:[1]", &[]);
        assert_eq!(recorded(13, 700).liveness_in(rebooted.path()), Liveness::Unknown);
        let container = fake_proc("boot-1", "pid:[2]", &[]);
        assert_eq!(recorded(13, 700).liveness_in(container.path()), Liveness::Unknown);
        let no_proc = Scratch::new();
        assert_eq!(recorded(13, 700).liveness_in(no_proc.path()), Liveness::Unknown);
    }

    #[test]
    fn this_process_is_running() {
        let me = LocalProcess::current().expect("this machine has /proc");
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.liveness(), Liveness::Running);
    }
}

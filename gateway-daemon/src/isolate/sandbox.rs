//! Confinement a worker process applies to itself before it reads any input.
//!
//! Order matters, and each step narrows what the next may do:
//! 1. **Resource limits** (`setrlimit`): address space (`RLIMIT_AS`), CPU seconds
//!    (`RLIMIT_CPU`), no core dumps (`RLIMIT_CORE` = 0), no file growth (`RLIMIT_FSIZE` = 0),
//!    few descriptors (`RLIMIT_NOFILE`).
//! 2. **Privileges**: when started as root, drop supplementary groups and switch to
//!    `nobody:nogroup` (65534), so a sandbox escape lands in an unprivileged account.
//! 3. **Landlock** (kernel ≥ 5.13): the file system becomes read-only and only below the
//!    directories the sanitizers need (fonts); everything else is invisible. On kernels without
//!    Landlock the rest still applies and a warning is logged once.
//! 4. **seccomp**: two filters. The first kills the process on the system calls a compromised
//!    sanitizer would want: `socket`, `connect`, `execve`, `ptrace`, `fork`-style process
//!    creation, `mount`, `bpf`, ... The second is an allow-list of the calls the sanitizers use;
//!    anything else fails with `EPERM`. (Killing on every unknown call would turn a harmless new
//!    libc call into a lost item; `EPERM` keeps the failure deterministic and visible.)
//!
//! What it does **not** protect against: kernel vulnerabilities reachable through the allowed
//! system calls; reading the allowed font directories; exhausting CPU up to the CPU limit and
//! memory up to the address-space cap (by design: those are the limits); side channels. It does
//! not hide the process list (no PID namespace): a worker can see, but not signal or trace, its
//! siblings (`kill`, `ptrace` are blocked).

use std::collections::BTreeMap;
use std::path::PathBuf;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// Limits and allowed paths for one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Address-space cap in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// CPU-time cap in seconds (`RLIMIT_CPU`); the kernel sends `SIGXCPU`, then `SIGKILL`.
    pub cpu_seconds: u64,
    /// Directories (or files) the worker may read: fonts, and nothing else.
    pub read_paths: Vec<PathBuf>,
    /// Apply Landlock and seccomp (false only for debugging with `--no-isolation`-like setups).
    pub confine: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            memory_bytes: 2 * 1024 * 1024 * 1024,
            cpu_seconds: 300,
            read_paths: vec![
                PathBuf::from("/usr/share/fonts"),
                PathBuf::from("/usr/local/share/fonts"),
            ],
            confine: true,
        }
    }
}

/// What the sandbox could enforce on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxStatus {
    /// Landlock fully or partly enforced.
    pub landlock: bool,
    /// seccomp filters installed.
    pub seccomp: bool,
    /// Privileges dropped from root.
    pub dropped_root: bool,
}

/// Error applying the sandbox: the worker must then refuse to work (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("sandbox setup failed at {step}: {detail}")]
pub struct SandboxError {
    step: &'static str,
    detail: String,
}

fn err(step: &'static str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError {
        step,
        detail: e.to_string(),
    }
}

/// Applies every step to the calling process. Call from the worker's main thread before any
/// other thread exists and before reading input.
pub fn apply(config: &SandboxConfig) -> Result<SandboxStatus, SandboxError> {
    use rlimit::{Resource, setrlimit};
    setrlimit(Resource::CORE, 0, 0).map_err(|e| err("RLIMIT_CORE", e))?;
    setrlimit(Resource::AS, config.memory_bytes, config.memory_bytes)
        .map_err(|e| err("RLIMIT_AS", e))?;
    // Soft limit sends SIGXCPU; the hard limit one second later kills.
    setrlimit(
        Resource::CPU,
        config.cpu_seconds,
        config.cpu_seconds.saturating_add(1),
    )
    .map_err(|e| err("RLIMIT_CPU", e))?;
    setrlimit(Resource::FSIZE, 0, 0).map_err(|e| err("RLIMIT_FSIZE", e))?;
    setrlimit(Resource::NOFILE, 64, 64).map_err(|e| err("RLIMIT_NOFILE", e))?;

    let dropped_root = drop_root()?;
    if !config.confine {
        return Ok(SandboxStatus {
            landlock: false,
            seccomp: false,
            dropped_root,
        });
    }
    let landlock = landlock_read_only(&config.read_paths)?;
    install_seccomp()?;
    Ok(SandboxStatus {
        landlock,
        seccomp: true,
        dropped_root,
    })
}

/// Switches from root to nobody:nogroup. No-op for other users.
fn drop_root() -> Result<bool, SandboxError> {
    use nix::unistd::{Gid, Uid, geteuid, setgid, setgroups, setuid};
    if !geteuid().is_root() {
        return Ok(false);
    }
    let nobody = 65534;
    setgroups(&[]).map_err(|e| err("setgroups", e))?;
    setgid(Gid::from_raw(nobody)).map_err(|e| err("setgid", e))?;
    setuid(Uid::from_raw(nobody)).map_err(|e| err("setuid", e))?;
    if geteuid().is_root() {
        return Err(err("setuid", "still root after dropping privileges"));
    }
    Ok(true)
}

/// Read-only access below `paths`, nothing else. Returns whether Landlock is enforced.
fn landlock_read_only(paths: &[PathBuf]) -> Result<bool, SandboxError> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    let abi = ABI::V3;
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err("landlock", e))?
        .create()
        .map_err(|e| err("landlock", e))?
        .add_rules(path_beneath_rules(existing, AccessFs::from_read(abi)))
        .map_err(|e| err("landlock", e))?
        .restrict_self()
        .map_err(|e| err("landlock", e))?;
    Ok(status.ruleset != RulesetStatus::NotEnforced)
}

/// System calls that end the worker at once: a sanitizer never needs them, an exploit does.
const KILL: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_sendto,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kill,
    libc::SYS_tkill,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_reboot,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
];

/// System calls the sanitizers use (memory, threads, reading fonts, pipes, time).
const ALLOW: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_close,
    libc::SYS_openat,
    libc::SYS_getdents64,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_tgkill,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    libc::SYS_prlimit64,
    libc::SYS_getrlimit,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    libc::SYS_getcwd,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_prctl,
    libc::SYS_uname,
    libc::SYS_membarrier,
    // Installing the later filters of this same sandbox; filters can only ever be added, and
    // each one only narrows what is allowed.
    libc::SYS_seccomp,
];

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    on_match: SeccompAction,
    otherwise: SeccompAction,
) -> Result<BpfProgram, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| err("seccomp", e))?;
    let f = SeccompFilter::new(rules, otherwise, on_match, arch).map_err(|e| err("seccomp", e))?;
    BpfProgram::try_from(f).map_err(|e| err("seccomp", e))
}

fn unconditional(calls: &[i64]) -> BTreeMap<i64, Vec<SeccompRule>> {
    calls.iter().map(|c| (*c, Vec::new())).collect()
}

fn install_seccomp() -> Result<(), SandboxError> {
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition};
    nix::sys::prctl::set_no_new_privs().map_err(|e| err("no_new_privs", e))?;
    // Threads yes, processes no: clone is allowed only with CLONE_THREAD in its flags.
    let thread_flag = libc::CLONE_THREAD as u64;
    let only_threads = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(thread_flag),
        thread_flag,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(|e| err("seccomp", e))?;
    let mut allowed = unconditional(ALLOW);
    allowed.insert(libc::SYS_clone, vec![only_threads]);
    let allow = compile(
        allowed,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
    )?;
    let kill = compile(
        unconditional(KILL),
        SeccompAction::KillProcess,
        SeccompAction::Allow,
    )?;
    // clone3 passes its flags in memory, out of the filter's reach: answer ENOSYS so the C
    // library falls back to clone, whose flags the allow-list can see.
    let no_clone3 = compile(
        unconditional(&[libc::SYS_clone3]),
        SeccompAction::Errno(libc::ENOSYS as u32),
        SeccompAction::Allow,
    )?;
    // Every installed filter runs and the strictest action wins (kill over errno); between
    // two errno answers the most recently installed filter's errno wins, hence this order.
    for prog in [&allow, &kill, &no_clone3] {
        seccompiler::apply_filter(prog).map_err(|e| err("seccomp", e))?;
    }
    Ok(())
}

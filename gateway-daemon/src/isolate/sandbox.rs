//! Confinement a worker process applies to itself before it reads any input.
//!
//! Order matters, and each step narrows what the next may do:
//! 0. **Session and descriptors** (done by the worker first thing, [`new_session`] and
//!    [`inherited_fds`]): a new session, so the worker has no controlling terminal; standard
//!    input is the parent's pipe, never a terminal; no descriptor above 2 that the caller left
//!    open survives (the worker re-executes itself with them marked close-on-exec, and refuses
//!    to start if any is still there).
//! 1. **Resource limits** (`setrlimit`): address space (`RLIMIT_AS`), CPU seconds
//!    (`RLIMIT_CPU`), no core dumps (`RLIMIT_CORE` = 0), no file growth (`RLIMIT_FSIZE` = 0),
//!    few descriptors (`RLIMIT_NOFILE`).
//! 2. **Privileges**: when started as root, drop supplementary groups and switch to
//!    `nobody:nogroup` (65534), so a sandbox escape lands in an unprivileged account.
//! 3. **Landlock** (kernel ≥ 5.13): the file system becomes read-only and only below the
//!    directories the sanitizers need (fonts); everything else, `/dev` included, is invisible.
//!    Where the kernel has them, device `ioctl`s (ABI 5) and signals to processes outside the
//!    worker (ABI 6) are refused too. A worker that cannot enforce its ruleset **refuses to
//!    start** unless [`SandboxConfig::allow_without_landlock`] is set (configuration
//!    `[pool] allow_without_landlock = true`).
//! 4. **seccomp**: three filters. The first kills the process on the system calls a
//!    compromised sanitizer would want: `socket`, `connect`, `execve`, `ptrace`, `fork`-style
//!    process creation, `mount`, `bpf`, ... The second is an allow-list of the calls the
//!    sanitizers use, some only with the arguments they need: `openat` only for reading (no
//!    write access mode, no `O_CREAT`/`O_TRUNC`/`O_APPEND`/`O_TMPFILE`; `open`, `creat` and
//!    `openat2` are not allowed at all), `kill`/`tgkill`/`tkill` only on the worker itself,
//!    `prlimit64` only on itself; anything else fails with `EPERM`. (Killing on every unknown
//!    call would turn a harmless new libc call into a lost item; `EPERM` keeps the failure
//!    deterministic and visible.) The third refuses the terminal-injection `ioctl`s
//!    (`TIOCSTI`, `TIOCLINUX`) with `EPERM`. The open rule holds whatever Landlock does, so even
//!    a worker allowed to run without Landlock cannot create, truncate or write files.
//!
//! What it does **not** protect against: kernel vulnerabilities reachable through the allowed
//! system calls; reading the allowed font directories (and, without Landlock, any file the
//! `nobody` user may read); exhausting CPU up to the CPU limit and memory up to the
//! address-space cap (by design: those are the limits); side channels. There is no PID
//! namespace: without Landlock (when allowed) a worker can list, but not signal, trace or
//! re-limit, its siblings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

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
    /// Start even when Landlock cannot be enforced (kernel without it, or disabled). Default
    /// false: such a worker refuses to start, because without Landlock it could read every
    /// file the `nobody` user can. seccomp's read-only open rule applies either way.
    pub allow_without_landlock: bool,
    /// Test switch: behave as if the kernel had no Landlock (`test-hooks` builds only).
    #[cfg(feature = "test-hooks")]
    pub simulate_no_landlock: bool,
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
            allow_without_landlock: false,
            #[cfg(feature = "test-hooks")]
            simulate_no_landlock: false,
        }
    }
}

/// What the sandbox could enforce on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxStatus {
    /// Landlock enforced (fully, or without the newest rights an older kernel lacks).
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

/// The refusal when Landlock is not enforced and the configuration does not allow that.
pub const NO_LANDLOCK: &str = "Landlock is not enforced on this kernel; refusing to start \
     (set `allow_without_landlock = true` in the configuration's [pool] table to run without it)";

/// Leaves the caller's session: the process gets no controlling terminal, so it can neither
/// open `/dev/tty` nor inject input into the operator's shell. Call first thing in a freshly
/// started child (it fails for a process-group leader).
pub fn new_session() -> Result<(), SandboxError> {
    use nix::unistd::{getpid, getsid, setsid};
    match setsid() {
        Ok(_) => Ok(()),
        // Already the leader of its own session (a worker that re-executed itself).
        Err(_) if getsid(None).ok() == Some(getpid()) => Ok(()),
        Err(e) => Err(err("setsid", e)),
    }
}

/// Descriptors above 2 that this process has open (the ones a caller may have leaked).
pub fn inherited_fds() -> Vec<i32> {
    close_fds::iter_open_fds(3).collect()
}

/// Marks every descriptor above 2 close-on-exec, so no program this process starts inherits
/// them. (Closing them outright is not possible without `unsafe`: the standard library owns
/// some; close-on-exec followed by an exec has the same effect.)
pub fn mark_fds_cloexec() {
    close_fds::set_fds_cloexec_threadsafe(3, &[]);
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
    #[cfg(feature = "test-hooks")]
    let landlock = if config.simulate_no_landlock {
        false
    } else {
        landlock_read_only(&config.read_paths)?
    };
    #[cfg(not(feature = "test-hooks"))]
    let landlock = landlock_read_only(&config.read_paths)?;
    if !landlock && !config.allow_without_landlock {
        return Err(err("landlock", NO_LANDLOCK));
    }
    install_seccomp(std::process::id())?;
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

/// Read-only access below `paths`, nothing else; device ioctls (ABI 5) and signals out of the
/// sandbox (ABI 6) refused where the kernel knows them. Returns whether Landlock is enforced.
fn landlock_read_only(paths: &[PathBuf]) -> Result<bool, SandboxError> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
        path_beneath_rules,
    };
    let abi = ABI::V6;
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err("landlock", e))?
        .scope(Scope::Signal)
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

/// System calls the sanitizers use (memory, threads, reading fonts, pipes, time). `openat`,
/// `clone`, `kill`, `tgkill`, `tkill` and `prlimit64` are allowed only with certain arguments
/// ([`conditional`]).
const ALLOW: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_close,
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
    libc::SYS_getgroups,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
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

/// Open flags that write, create or truncate: a worker's `openat` may carry none of them.
const WRITE_FLAGS: u64 = (libc::O_WRONLY
    | libc::O_RDWR
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_TRUNC
    | libc::O_APPEND
    | (libc::O_TMPFILE & !libc::O_DIRECTORY)) as u64;

/// `ioctl` requests that push input into a terminal (or its console): never allowed.
#[allow(
    clippy::unnecessary_cast,
    reason = "the ioctl request type is c_ulong with glibc but c_int with musl"
)]
const TERMINAL_INJECTION: [u64; 2] = [libc::TIOCSTI as u64, libc::TIOCLINUX as u64];

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    // Dword: the kernel reads these arguments (flags, pids, ioctl requests) as 32-bit values,
    // so high bits a caller sets cannot smuggle a different value past the comparison.
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| err("seccomp", e))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, SandboxError> {
    SeccompRule::new(conds).map_err(|e| err("seccomp", e))
}

/// The allow-list entries that depend on arguments, for a process whose pid is `own_pid`.
fn conditional(own_pid: u32) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SandboxError> {
    let me = u64::from(own_pid);
    // Threads yes, processes no: clone is allowed only with CLONE_THREAD in its flags.
    let thread_flag = libc::CLONE_THREAD as u64;
    let only_threads = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(thread_flag),
        thread_flag,
    )
    .map_err(|e| err("seccomp", e))?;
    let read_only = |flags_arg: u8| cond(flags_arg, SeccompCmpOp::MaskedEq(WRITE_FLAGS), 0);
    let only_me = |arg: u8| cond(arg, SeccompCmpOp::Eq, me);
    Ok([
        (libc::SYS_clone, vec![rule(vec![only_threads])?]),
        (libc::SYS_openat, vec![rule(vec![read_only(2)?])?]),
        (libc::SYS_kill, vec![rule(vec![only_me(0)?])?]),
        (libc::SYS_tgkill, vec![rule(vec![only_me(0)?])?]),
        (libc::SYS_tkill, vec![rule(vec![only_me(0)?])?]),
        (
            libc::SYS_prlimit64,
            vec![
                rule(vec![cond(0, SeccompCmpOp::Eq, 0)?])?,
                rule(vec![only_me(0)?])?,
            ],
        ),
    ]
    .into_iter()
    .collect())
}

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

/// A filter refusing (`EPERM`) the terminal-injection ioctls and allowing everything else;
/// shared with the LibreOffice trampoline ([`crate::isolate::confine`]).
pub(crate) fn no_terminal_injection() -> Result<BpfProgram, SandboxError> {
    let rules = TERMINAL_INJECTION
        .iter()
        .map(|req| rule(vec![cond(1, SeccompCmpOp::Eq, *req)?]))
        .collect::<Result<Vec<_>, _>>()?;
    compile(
        [(libc::SYS_ioctl, rules)].into_iter().collect(),
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
    )
}

/// The worker's filters, in the order they are installed.
fn filters(own_pid: u32) -> Result<Vec<BpfProgram>, SandboxError> {
    let mut allowed = unconditional(ALLOW);
    allowed.extend(conditional(own_pid)?);
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
    Ok(vec![allow, kill, no_clone3, no_terminal_injection()?])
}

fn install_seccomp(own_pid: u32) -> Result<(), SandboxError> {
    let progs = filters(own_pid)?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| err("no_new_privs", e))?;
    for prog in &progs {
        seccompiler::apply_filter(prog).map_err(|e| err("seccomp", e))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unnecessary_cast,
    reason = "ioctl request types differ between C libraries"
)]
mod tests {
    //! The filters are checked by running their BPF here, on made-up system calls, so every
    //! argument rule is tested for the values it must refuse and the ones it must let through
    //! (including ones no safe Rust API can issue, like `TIOCSTI`).
    use super::*;

    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_ERRNO: u32 = 0x0005_0000;
    const ME: u32 = 4242;

    fn audit_arch() -> u32 {
        match std::env::consts::ARCH {
            "x86_64" => 62 | 0x8000_0000 | 0x4000_0000,
            "aarch64" => 183 | 0x8000_0000 | 0x4000_0000,
            other => panic!("no audit arch for {other}"),
        }
    }

    /// Classic BPF as seccomp runs it, for the instructions seccompiler emits.
    fn eval(prog: &BpfProgram, data: &[u8]) -> u32 {
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &prog[pc];
            pc += 1;
            match ins.code {
                0x20 => {
                    let at = ins.k as usize;
                    acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x54 => acc &= ins.k,
                0x05 => pc += ins.k as usize,
                0x15 | 0x25 | 0x35 => {
                    let hit = match ins.code {
                        0x15 => acc == ins.k,
                        0x25 => acc > ins.k,
                        _ => acc >= ins.k,
                    };
                    pc += usize::from(if hit { ins.jt } else { ins.jf });
                }
                0x06 => return ins.k,
                other => panic!("unexpected BPF instruction {other:#x}"),
            }
        }
    }

    /// The action the kernel takes for a call when all `progs` are installed, in order.
    fn verdict(progs: &[BpfProgram], nr: i64, args: [u64; 6]) -> u32 {
        let mut data = vec![0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
        data[4..8].copy_from_slice(&audit_arch().to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        // The most restrictive action wins (compared as signed); between equals, the most
        // recently installed filter's.
        let mut best = RET_ALLOW;
        for prog in progs.iter().rev() {
            let ret = eval(prog, &data);
            if ((ret & 0xffff_0000) as i32) < ((best & 0xffff_0000) as i32) {
                best = ret;
            }
        }
        best
    }

    fn eperm() -> u32 {
        RET_ERRNO | libc::EPERM as u32
    }

    fn call(nr: i64, args: &[u64]) -> u32 {
        let progs = filters(ME).unwrap();
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        verdict(&progs, nr, a)
    }

    fn flags(f: libc::c_int) -> u64 {
        f as u64
    }

    #[test]
    fn openat_is_allowed_only_for_reading() {
        let at = libc::AT_FDCWD as u64;
        for ok in [
            libc::O_RDONLY,
            libc::O_RDONLY | libc::O_CLOEXEC,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            libc::O_PATH | libc::O_CLOEXEC,
        ] {
            assert_eq!(
                call(libc::SYS_openat, &[at, 0, flags(ok)]),
                RET_ALLOW,
                "{ok:#o}"
            );
        }
        for bad in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_ACCMODE,
            libc::O_RDONLY | libc::O_CREAT,
            libc::O_RDONLY | libc::O_TRUNC,
            libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC,
            libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL,
            libc::O_TMPFILE | libc::O_RDWR,
        ] {
            assert_eq!(
                call(libc::SYS_openat, &[at, 0, flags(bad)]),
                eperm(),
                "{bad:#o}"
            );
        }
        // The kernel reads flags as 32 bits: high bits change nothing either way.
        assert_eq!(
            call(libc::SYS_openat, &[at, 0, (1 << 40) | flags(libc::O_RDWR)]),
            eperm()
        );
        // openat2 carries its flags in memory, out of reach: refused outright, like open/creat.
        assert_eq!(call(libc::SYS_openat2, &[at, 0, 0, 24]), eperm());
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(call(libc::SYS_open, &[0, 0]), eperm());
            assert_eq!(call(libc::SYS_creat, &[0, 0o644]), eperm());
        }
    }

    #[test]
    fn terminal_injection_ioctls_are_refused() {
        let sti = libc::TIOCSTI as u64;
        let linux = libc::TIOCLINUX as u64;
        assert_eq!(call(libc::SYS_ioctl, &[0, sti, 0]), eperm());
        assert_eq!(call(libc::SYS_ioctl, &[2, linux, 0]), eperm());
        // The kernel takes the request as 32 bits: high bits must not sneak it past the rule.
        assert_eq!(call(libc::SYS_ioctl, &[0, (1 << 32) | sti, 0]), eperm());
        // Other ioctls (terminal queries, FIONREAD on a pipe) still work.
        assert_eq!(
            call(libc::SYS_ioctl, &[0, libc::TCGETS as u64, 0]),
            RET_ALLOW
        );
        assert_eq!(
            call(libc::SYS_ioctl, &[0, libc::FIONREAD as u64, 0]),
            RET_ALLOW
        );
        // The helper's filter alone refuses them too.
        let alone = [no_terminal_injection().unwrap()];
        assert_eq!(
            verdict(&alone, libc::SYS_ioctl, [1, sti, 0, 0, 0, 0]),
            eperm()
        );
        assert_eq!(
            verdict(
                &alone,
                libc::SYS_ioctl,
                [1, libc::TCGETS as u64, 0, 0, 0, 0]
            ),
            RET_ALLOW
        );
    }

    #[test]
    fn signals_and_limits_reach_only_the_worker_itself() {
        let me = u64::from(ME);
        let sig = libc::SIGKILL as u64;
        assert_eq!(call(libc::SYS_kill, &[me, sig]), RET_ALLOW);
        assert_eq!(call(libc::SYS_tgkill, &[me, me + 1, sig]), RET_ALLOW);
        assert_eq!(call(libc::SYS_tkill, &[me, sig]), RET_ALLOW);
        // A sibling, the parent, the process group, everyone.
        for other in [me + 1, 1, 0, u64::from(u32::MAX)] {
            assert_eq!(call(libc::SYS_kill, &[other, sig]), eperm(), "kill {other}");
            assert_eq!(call(libc::SYS_tgkill, &[other, other, sig]), eperm());
            assert_eq!(call(libc::SYS_tkill, &[other, sig]), eperm());
        }
        let fsize = libc::RLIMIT_FSIZE as u64;
        assert_eq!(call(libc::SYS_prlimit64, &[0, fsize, 0, 8]), RET_ALLOW);
        assert_eq!(call(libc::SYS_prlimit64, &[me, fsize, 0, 8]), RET_ALLOW);
        assert_eq!(call(libc::SYS_prlimit64, &[me + 1, fsize, 8, 0]), eperm());
        assert_eq!(call(libc::SYS_prlimit64, &[1, fsize, 8, 0]), eperm());
        // Signals by other routes are not in the allow-list at all.
        for nr in [
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
            libc::SYS_pidfd_send_signal,
            libc::SYS_pidfd_open,
        ] {
            assert_eq!(call(nr, &[me + 1, sig]), eperm(), "{nr}");
        }
    }

    #[test]
    fn process_creation_and_exec_stay_refused() {
        assert_eq!(call(libc::SYS_execve, &[0, 0, 0]), RET_KILL_PROCESS);
        assert_eq!(call(libc::SYS_socket, &[2, 1, 0]), RET_KILL_PROCESS);
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(call(libc::SYS_clone, &[thread]), RET_ALLOW);
        assert_eq!(call(libc::SYS_clone, &[libc::SIGCHLD as u64]), eperm());
        assert_eq!(
            call(libc::SYS_clone3, &[0, 88]),
            RET_ERRNO | libc::ENOSYS as u32
        );
    }
}

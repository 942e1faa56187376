//! `mugai __confine`: a trampoline that confines a helper program (LibreOffice) before it
//! starts, so the helper runs inside the sandbox from its first instruction. (The project
//! forbids `unsafe`, so confinement cannot be done between `fork` and `exec` by the parent.)
//!
//! Two stages, both this same executable:
//! 1. the **outer** stage (started by the converter, in its own process group) marks every
//!    inherited descriptor above 2 close-on-exec and creates a new network namespace and a new
//!    PID namespace; then it starts the inner stage with standard input on
//!    `/dev/null` and waits for it;
//! 2. the **inner** stage is PID 1 of the new PID namespace: it dies with the outer stage
//!    (`PR_SET_PDEATHSIG`), leaves the caller's session (`setsid`: no controlling terminal),
//!    confines itself, then starts the program and waits for it. When it exits, the kernel kills
//!    every process left in the namespace, so nothing the helper started — not even a child
//!    that called `setsid` to leave the process group — outlives the job.
//!
//! What the helper gets:
//! - **no network**: a new, empty network namespace (`unshare(CLONE_NEWNET)`), and in
//!   any case seccomp answers `EACCES` to creating `AF_INET`, `AF_INET6`, `AF_PACKET` and
//!   `AF_NETLINK` sockets (local `AF_UNIX` sockets, which LibreOffice uses internally, work);
//! - **file system** (Landlock): read and execute below the system directories (`/usr`, `/lib*`,
//!   `/bin`, `/sbin`, `/etc`, `/opt`), read of `/proc` and `/sys`, of `/dev/null` and
//!   `/dev/urandom` only (no terminal, no other device: LibreOffice needs no more), and
//!   read-write only below the job's own directory (profile, input, output, `TMPDIR`) and
//!   `/dev/shm`, plus creating/removing sockets in `/tmp` (LibreOffice's single-instance pipe);
//!   no other write anywhere; device `ioctl`s refused (Landlock ABI 5) and signals to processes
//!   outside the helper refused (ABI 6) where the kernel has them. Without Landlock the helper
//!   **refuses to start** unless `--allow-without-landlock` is given (configuration
//!   `[pool] allow_without_landlock`);
//! - **no terminal**: its own session, standard input on `/dev/null`, and seccomp refusing the
//!   `TIOCSTI`/`TIOCLINUX` ioctls (`EPERM`);
//! - **limits**: CPU seconds, address space, no core dumps, output file size, and at most
//!   [`MAX_PROCESSES`] processes for the helper's user (`RLIMIT_NPROC`);
//! - **privileges**: when started as root, switches to `nobody` first (the job directory must be
//!   owned by it, see [`prepare_dir`]).
//!
//! Without root there is no privilege drop, and the namespaces come with a new user namespace
//! (the helper then appears as the overflow user inside it); where the kernel refuses
//! unprivileged user namespaces there are none, and descendants that leave the helper's
//! session are then not killed with it.
//!
//! Usage: `mugai __confine --rw DIR [--cpu SECS] [--memory BYTES] [--allow-without-landlock]
//! -- /ABSOLUTE/PROGRAM ARGS...`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The hidden subcommand.
pub const CONFINE_ARG: &str = "__confine";

/// The hidden argument that selects the inner stage.
const INNER_ARG: &str = "--inner";

/// Exit code when confinement could not be set up (the helper never ran).
pub const EXIT_CONFINE_FAILED: i32 = 75;

/// The user helpers run as when the daemon runs as root.
pub const NOBODY: u32 = 65534;

/// `RLIMIT_NPROC` for the helper: processes (threads included) of the helper's user, so a
/// fork bomb stops there. Counted per user, so it leaves room for the workers and other
/// conversions that also run as `nobody`.
pub const MAX_PROCESSES: u64 = 1024;

/// Hands the job directory to the unprivileged helper user (when we are root).
pub fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    use nix::unistd::{Gid, Uid, chown, geteuid};
    if geteuid().is_root() {
        chown(
            dir,
            Some(Uid::from_raw(NOBODY)),
            Some(Gid::from_raw(NOBODY)),
        )
        .map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// The command line that runs `program args` confined to `rw_dir`. The program must be given
/// by absolute path (it is never looked up in `PATH`). It starts in `rw_dir`: the caller's
/// working directory may be one the confined user cannot enter (a 0700 home), and is none of
/// the helper's business anyway.
pub fn command(
    exe: &Path,
    rw_dir: &Path,
    cpu_seconds: u64,
    memory_bytes: u64,
    allow_without_landlock: bool,
) -> Command {
    let mut c = Command::new(exe);
    c.current_dir(rw_dir);
    c.arg(CONFINE_ARG)
        .arg("--rw")
        .arg(rw_dir)
        .arg("--cpu")
        .arg(cpu_seconds.to_string())
        .arg("--memory")
        .arg(memory_bytes.to_string());
    if allow_without_landlock {
        c.arg("--allow-without-landlock");
    }
    c.arg("--");
    c
}

#[derive(Debug)]
struct Args {
    inner: bool,
    rw: PathBuf,
    cpu: u64,
    memory: u64,
    allow_without_landlock: bool,
    simulate_no_landlock: bool,
    program: Vec<String>,
}

fn parse(args: &[String]) -> Option<Args> {
    let mut out = Args {
        inner: false,
        rw: PathBuf::new(),
        cpu: 120,
        memory: 8 * 1024 * 1024 * 1024,
        allow_without_landlock: false,
        simulate_no_landlock: false,
        program: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            INNER_ARG => out.inner = true,
            "--rw" => out.rw = PathBuf::from(it.next()?),
            "--cpu" => out.cpu = it.next()?.parse().ok()?,
            "--memory" => out.memory = it.next()?.parse().ok()?,
            "--allow-without-landlock" => out.allow_without_landlock = true,
            #[cfg(feature = "test-hooks")]
            "--simulate-no-landlock" => out.simulate_no_landlock = true,
            "--" => {
                out.program = it.cloned().collect();
                break;
            }
            _ => return None,
        }
    }
    let absolute = out
        .program
        .first()
        .is_some_and(|p| Path::new(p).is_absolute());
    (!out.rw.as_os_str().is_empty() && absolute).then_some(out)
}

fn no_inet_sockets() -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    for family in [
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_PACKET,
        libc::AF_NETLINK,
    ] {
        let cond =
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, family as u64)
                .and_then(|c| SeccompRule::new(vec![c]))
                .map_err(|e| e.to_string())?;
        rules.push(cond);
    }
    let map: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_socket, rules)].into_iter().collect();
    let f = SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(f).map_err(|e| e.to_string())
}

/// The outer stage: shed descriptors, make the namespaces, run the inner stage and pass on its
/// exit status.
fn outer(args: &[String]) -> Result<i32, String> {
    use std::os::unix::process::ExitStatusExt;
    crate::isolate::sandbox::mark_fds_cloexec();
    {
        use nix::sched::CloneFlags;
        // The PID namespace applies to the children started from here on: the inner stage is
        // its PID 1. Without root, a new user namespace (where the kernel allows unprivileged
        // ones) is what permits the other two.
        let both = CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWPID;
        if nix::unistd::geteuid().is_root() {
            nix::sched::unshare(both).map_err(|e| format!("network and PID namespaces: {e}"))?;
        } else if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER | both) {
            eprintln!(
                "mugai confine: no user namespace for an unprivileged helper ({e}); running \
                 without network and PID namespaces"
            );
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my executable: {e}"))?;
    // The inner stage's standard input is a pipe this stage holds open and never writes: end
    // of file there tells the inner stage that this one is gone (see `outer_gone`).
    let mut child = Command::new(exe)
        .arg(CONFINE_ARG)
        .arg(INNER_ARG)
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the inner stage: {e}"))?;
    let lifeline = child.stdin.take();
    let status = child.wait();
    drop(lifeline);
    let status = status.map_err(|e| format!("waiting for the inner stage: {e}"))?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_CONFINE_FAILED))
}

fn confine(a: &Args) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
        path_beneath_rules,
    };
    use rlimit::{Resource, setrlimit};
    setrlimit(Resource::CORE, 0, 0).map_err(|e| e.to_string())?;
    setrlimit(Resource::CPU, a.cpu, a.cpu.saturating_add(1)).map_err(|e| e.to_string())?;
    setrlimit(Resource::AS, a.memory, a.memory).map_err(|e| e.to_string())?;
    setrlimit(Resource::FSIZE, 1 << 30, 1 << 30).map_err(|e| e.to_string())?;
    setrlimit(Resource::NPROC, MAX_PROCESSES, MAX_PROCESSES).map_err(|e| e.to_string())?;
    if nix::unistd::geteuid().is_root() {
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        setgroups(&[]).map_err(|e| e.to_string())?;
        setgid(Gid::from_raw(NOBODY)).map_err(|e| e.to_string())?;
        setuid(Uid::from_raw(NOBODY)).map_err(|e| e.to_string())?;
    }
    let abi = ABI::V6;
    let system: Vec<&str> = [
        "/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    let read_only: Vec<&str> = [
        "/proc",
        "/sys",
        "/dev/urandom",
        "/var/cache/fontconfig",
        "/var/spool/libreoffice",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    let enforced = if a.simulate_no_landlock {
        false
    } else {
        let status = Ruleset::default()
            .handle_access(AccessFs::from_all(abi))
            .map_err(|e| e.to_string())?
            .scope(Scope::Signal)
            .map_err(|e| e.to_string())?
            .create()
            .map_err(|e| e.to_string())?
            .add_rules(path_beneath_rules(
                system,
                AccessFs::from_read(abi) | AccessFs::Execute,
            ))
            .map_err(|e| e.to_string())?
            .add_rules(path_beneath_rules(read_only, AccessFs::from_read(abi)))
            .map_err(|e| e.to_string())?
            .add_rules(path_beneath_rules([&a.rw], AccessFs::from_all(abi)))
            .map_err(|e| e.to_string())?
            .add_rules(path_beneath_rules(["/dev/shm"], AccessFs::from_all(abi)))
            .map_err(|e| e.to_string())?
            // LibreOffice binds its single-instance pipe socket in /tmp whatever TMPDIR says:
            // allow creating and removing sockets there, nothing else.
            .add_rules(path_beneath_rules(
                ["/tmp"],
                AccessFs::MakeSock | AccessFs::RemoveFile,
            ))
            .map_err(|e| e.to_string())?
            .add_rules(path_beneath_rules(
                ["/dev/null"],
                AccessFs::from_read(abi) | AccessFs::WriteFile,
            ))
            .map_err(|e| e.to_string())?
            .restrict_self()
            .map_err(|e| e.to_string())?;
        status.ruleset != RulesetStatus::NotEnforced
    };
    if !enforced && !a.allow_without_landlock {
        return Err(crate::isolate::sandbox::NO_LANDLOCK.replace(
            "set `allow_without_landlock = true` in the configuration's [pool] table",
            "pass --allow-without-landlock (configuration [pool] allow_without_landlock)",
        ));
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&no_inet_sockets()?).map_err(|e| e.to_string())?;
    let no_tty = crate::isolate::sandbox::no_terminal_injection().map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&no_tty).map_err(|e| e.to_string())?;
    Ok(())
}

/// The inner stage: die with the outer stage, leave the terminal's session, confine, then run
/// the program as a child and return its exit status. As PID 1 of its namespace, its exit ends
/// every process the program left behind.
fn inner(a: &Args) -> Result<i32, String> {
    use std::os::unix::process::ExitStatusExt;
    crate::isolate::sandbox::new_session().map_err(|e| e.to_string())?;
    confine(a)?;
    // Only now: the kernel clears the parent-death signal when the user id changes, which
    // `confine` just did.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("parent-death signal: {e}"))?;
    // The outer stage may have been killed before the line above took effect.
    if outer_gone() {
        return Err("the outer stage is gone".into());
    }
    let Some((program, rest)) = a.program.split_first() else {
        return Err("no program".into());
    };
    let status = Command::new(program)
        .args(rest)
        .env_clear()
        .env("HOME", &a.rw)
        .env("TMPDIR", &a.rw)
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(EXIT_CONFINE_FAILED))
}

/// Whether the outer stage has exited: its end of our standard input (a pipe it never writes)
/// is closed. Anything else on standard input (a terminal, `/dev/null`) counts as gone too: the
/// inner stage is only ever started by the outer one.
fn outer_gone() -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let is_pipe = nix::sys::stat::fstat(fd)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
        .unwrap_or(false);
    if !is_pipe || fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    // EAGAIN: the writer is still there, silent. 0: end of file, the outer stage has exited.
    !matches!(
        nix::unistd::read(fd, &mut byte),
        Err(nix::errno::Errno::EAGAIN)
    )
}

/// Runs the trampoline (either stage). Returns the exit code: the program's, or
/// [`EXIT_CONFINE_FAILED`] when confinement could not be set up.
pub fn run(args: &[String]) -> i32 {
    let Some(a) = parse(args) else {
        eprintln!(
            "mugai confine: usage: {CONFINE_ARG} --rw DIR [--cpu S] [--memory B] \
             [--allow-without-landlock] -- /PROGRAM ARGS..."
        );
        return EXIT_CONFINE_FAILED;
    };
    let result = if a.inner { inner(&a) } else { outer(args) };
    result.unwrap_or_else(|e| {
        eprintln!("mugai confine: {e}");
        EXIT_CONFINE_FAILED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse() {
        let args: Vec<String> = [
            "--rw",
            "/tmp/x",
            "--cpu",
            "5",
            "--",
            "/usr/bin/soffice",
            "--headless",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let a = parse(&args).unwrap();
        assert!(!a.inner && !a.allow_without_landlock);
        assert_eq!(a.rw, PathBuf::from("/tmp/x"));
        assert_eq!(a.cpu, 5);
        assert_eq!(a.program, vec!["/usr/bin/soffice", "--headless"]);
        assert!(parse(&args[..4]).is_none());
        // Never a program looked up through PATH.
        let mut relative = args.clone();
        relative[5] = "soffice".into();
        assert!(parse(&relative).is_none());
    }
}

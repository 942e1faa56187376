//! `mugai __confine`: a trampoline that confines itself, then executes a helper program
//! (LibreOffice) in its place, so the helper starts already inside the sandbox. (The project
//! forbids `unsafe`, so confinement cannot be done between `fork` and `exec` by the parent.)
//!
//! What the helper gets:
//! - **no network**: a new, empty network namespace (`unshare(CLONE_NEWNET)`, root only), and in
//!   any case seccomp answers `EACCES` to creating `AF_INET`, `AF_INET6`, `AF_PACKET` and
//!   `AF_NETLINK` sockets (local `AF_UNIX` sockets, which LibreOffice uses internally, work);
//! - **file system** (Landlock): read and execute below the system directories (`/usr`, `/lib*`,
//!   `/bin`, `/sbin`, `/etc`, `/opt`), read of `/proc`, `/sys` and `/dev`, and read-write only
//!   below the job's own temporary directory (profile, input, output, `TMPDIR`) and
//!   `/dev/shm`, plus creating/removing sockets in `/tmp` (LibreOffice's single-instance pipe);
//!   no other write anywhere;
//! - **limits**: CPU seconds, address space, no core dumps, output file size;
//! - **privileges**: when started as root, switches to `nobody` first (the job directory must be
//!   owned by it, see [`prepare_dir`]).
//!
//! Usage: `mugai __confine --rw DIR [--cpu SECS] [--memory BYTES] -- PROGRAM ARGS...`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The hidden subcommand.
pub const CONFINE_ARG: &str = "__confine";

/// Exit code when confinement could not be set up (the helper never ran).
pub const EXIT_CONFINE_FAILED: i32 = 75;

/// The user helpers run as when the daemon runs as root.
pub const NOBODY: u32 = 65534;

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

/// The command line that runs `program args` confined to `rw_dir`.
pub fn command(exe: &Path, rw_dir: &Path, cpu_seconds: u64, memory_bytes: u64) -> Command {
    let mut c = Command::new(exe);
    c.arg(CONFINE_ARG)
        .arg("--rw")
        .arg(rw_dir)
        .arg("--cpu")
        .arg(cpu_seconds.to_string())
        .arg("--memory")
        .arg(memory_bytes.to_string())
        .arg("--");
    c
}

struct Args {
    rw: PathBuf,
    cpu: u64,
    memory: u64,
    program: Vec<String>,
}

fn parse(args: &[String]) -> Option<Args> {
    let mut out = Args {
        rw: PathBuf::new(),
        cpu: 120,
        memory: 8 * 1024 * 1024 * 1024,
        program: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rw" => out.rw = PathBuf::from(it.next()?),
            "--cpu" => out.cpu = it.next()?.parse().ok()?,
            "--memory" => out.memory = it.next()?.parse().ok()?,
            "--" => {
                out.program = it.cloned().collect();
                break;
            }
            _ => return None,
        }
    }
    (!out.rw.as_os_str().is_empty() && !out.program.is_empty()).then_some(out)
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

fn confine(a: &Args) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, path_beneath_rules,
    };
    use rlimit::{Resource, setrlimit};
    setrlimit(Resource::CORE, 0, 0).map_err(|e| e.to_string())?;
    setrlimit(Resource::CPU, a.cpu, a.cpu.saturating_add(1)).map_err(|e| e.to_string())?;
    setrlimit(Resource::AS, a.memory, a.memory).map_err(|e| e.to_string())?;
    setrlimit(Resource::FSIZE, 1 << 30, 1 << 30).map_err(|e| e.to_string())?;
    if nix::unistd::geteuid().is_root() {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("network namespace: {e}"))?;
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        setgroups(&[]).map_err(|e| e.to_string())?;
        setgid(Gid::from_raw(NOBODY)).map_err(|e| e.to_string())?;
        setuid(Uid::from_raw(NOBODY)).map_err(|e| e.to_string())?;
    }
    let abi = ABI::V3;
    let system: Vec<&str> = [
        "/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    let read_only: Vec<&str> = [
        "/proc",
        "/sys",
        "/dev",
        "/var/cache/fontconfig",
        "/var/spool/libreoffice",
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
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
    nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&no_inet_sockets()?).map_err(|e| e.to_string())?;
    Ok(())
}

/// Runs the trampoline: confine, then replace this process with the program. Returns only on
/// failure, with the exit code.
pub fn run(args: &[String]) -> i32 {
    let Some(a) = parse(args) else {
        eprintln!(
            "mugai confine: usage: {CONFINE_ARG} --rw DIR [--cpu S] [--memory B] -- PROGRAM ARGS..."
        );
        return EXIT_CONFINE_FAILED;
    };
    if let Err(e) = confine(&a) {
        eprintln!("mugai confine: {e}");
        return EXIT_CONFINE_FAILED;
    }
    let Some((program, rest)) = a.program.split_first() else {
        return EXIT_CONFINE_FAILED;
    };
    let err = Command::new(program)
        .args(rest)
        .env_clear()
        .env("HOME", &a.rw)
        .env("TMPDIR", &a.rw)
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .exec();
    eprintln!("mugai confine: cannot run {program}: {err}");
    EXIT_CONFINE_FAILED
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
            "soffice",
            "--headless",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let a = parse(&args).unwrap();
        assert_eq!(a.rw, PathBuf::from("/tmp/x"));
        assert_eq!(a.cpu, 5);
        assert_eq!(a.program, vec!["soffice", "--headless"]);
        assert!(parse(&args[..4]).is_none());
    }
}

//! `mugai`: thin entry point over the `gateway_daemon` library.

fn main() -> std::process::ExitCode {
    // Hidden subcommands used by the daemon itself: a sandboxed worker, and the trampoline that
    // confines helper programs. They run before any CLI parsing or logging set-up.
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(gateway_daemon::isolate::worker::WORKER_ARG) => std::process::exit(
            gateway_daemon::isolate::worker::run(args.get(1..).unwrap_or_default()),
        ),
        Some(gateway_daemon::isolate::confine::CONFINE_ARG) => std::process::exit(
            gateway_daemon::isolate::confine::run(args.get(1..).unwrap_or_default()),
        ),
        _ => gateway_daemon::cli::main(),
    }
}

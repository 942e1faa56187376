//! `mugai`: thin entry point over the `gateway_daemon` library.

fn main() -> std::process::ExitCode {
    gateway_daemon::cli::main()
}

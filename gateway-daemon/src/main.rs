//! `mugai`: thin entry point over the `gateway_daemon` library.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(gateway_daemon::worker::WORKER_ARG) {
        std::process::exit(gateway_daemon::worker::run(
            args.get(1..).unwrap_or_default(),
        ));
    }
    if args.first().map(String::as_str) == Some(gateway_daemon::confine::CONFINE_ARG) {
        std::process::exit(gateway_daemon::confine::run(
            args.get(1..).unwrap_or_default(),
        ));
    }
    println!("mugai {}", gateway_daemon::VERSION);
}

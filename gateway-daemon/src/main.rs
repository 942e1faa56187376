//! `mugai`: thin entry point over the `gateway_daemon` library.

fn main() {
    println!("mugai {}", gateway_daemon::VERSION);
}

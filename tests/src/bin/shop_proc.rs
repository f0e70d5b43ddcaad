//! The `shop` command, built in this package so the fault tests can run a service in a process
//! of their own (`env!("CARGO_BIN_EXE_shop-proc")`) and SIGKILL it. No logic of its own.

fn main() -> std::process::ExitCode {
    shop::cli::main()
}

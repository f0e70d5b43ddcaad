//! `shop`: see `shop::cli`.

fn main() -> std::process::ExitCode {
    shop::cli::main()
}

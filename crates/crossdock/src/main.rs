//! The `crossdock` command.

fn main() -> std::process::ExitCode {
    crossdock::cli::main()
}

//! `posedge`: the binary is a thin shell around [`posedge::cli`].

fn main() -> std::process::ExitCode {
    posedge::cli::main()
}

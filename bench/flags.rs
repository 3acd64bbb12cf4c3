//! `--key value` flags for the bench tools (`loadgen`, `backoffice`), shared by `#[path]`.

use std::collections::HashMap;

/// The subcommand and its flags from this process's command line; `None` (after saying
/// why, prefixed with `tool`) when there is no subcommand or a flag is malformed, so the
/// caller prints its usage.
pub fn command_line(tool: &str) -> Option<(String, HashMap<String, String>)> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first()?.clone();
    match parse_flags(&args[1..]) {
        Ok(flags) => Some((cmd, flags)),
        Err(e) => {
            eprintln!("{tool}: {e}");
            None
        }
    }
}

/// `--key value` pairs after the subcommand.
pub fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            return Err(format!("unexpected argument {k:?}"));
        };
        let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.insert(name.to_string(), v.clone());
    }
    Ok(out)
}

pub fn get<'a>(flags: &'a HashMap<String, String>, k: &str) -> Result<&'a str, String> {
    flags
        .get(k)
        .map(String::as_str)
        .ok_or_else(|| format!("missing --{k}"))
}

pub fn get_f64(
    flags: &HashMap<String, String>,
    k: &str,
    default: Option<f64>,
) -> Result<f64, String> {
    match flags.get(k) {
        Some(v) => v.parse().map_err(|e| format!("--{k} {v:?}: {e}")),
        None => default.ok_or_else(|| format!("missing --{k}")),
    }
}

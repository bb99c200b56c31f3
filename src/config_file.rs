//! `archserve serve --config FILE`: a TOML file of `serve` flags, turned into command-line
//! arguments placed before the real ones, so flags given on the command line override it.
//!
//! Every `serve` flag is a key, spelled as the flag without its dashes (`port = 8080`,
//! `idle-timeout = 30`, `dir-listing = true`, `header = ["*.css: Cache-Control: no-cache"]`,
//! `listen = ["127.0.0.1:8080", "[::1]:8080"]`):
//! the keys come from the clap definitions, so a new flag is a new key with nothing to add here.
//! A switch takes `true` (`false` leaves it off); a repeatable flag takes an array. Paths are
//! relative to the working directory, as on the command line. Each value is checked by the
//! flag's own parser here, so an unknown key, a wrong type or a bad value is refused before the
//! server starts, with the line and column of the value.
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// `args` (the process's, program name first) with the arguments of the `--config` file, if
/// `serve` has one, inserted right after `serve`. An error is one line, ready for `error: `.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(serve) = args.iter().position(|a| a == "serve") else {
        return Ok(args);
    };
    let Some(path) = config_path(&args[serve + 1..]) else {
        return Ok(args);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("config {}: {e}", path.display()))?;
    let from_file =
        to_args(&text).map_err(|(at, msg)| format!("config {}:{at}: {msg}", path.display()))?;
    let mut out = args[..=serve].to_vec();
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend_from_slice(&args[serve + 1..]);
    Ok(out)
}

/// The value of `--config PATH` or `--config=PATH` among `serve`'s arguments.
fn config_path(args: &[OsString]) -> Option<std::path::PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().map(Into::into);
        }
        if let Some(p) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(Path::new(p).to_path_buf());
        }
    }
    None
}

/// The command-line arguments a config file stands for, or where (`line:column`) and why it is
/// refused.
pub fn to_args(text: &str) -> Result<Vec<String>, (String, String)> {
    let table: BTreeMap<String, toml::Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            (line_col(text, at), e.message().to_owned())
        })?;
    let cmd = Cli::command();
    let serve = cmd
        .find_subcommand("serve")
        .ok_or_else(|| (line_col(text, 0), "no serve command".to_owned()))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let at = || line_col(text, value.span().start);
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config" && key != "help")
            .ok_or_else(|| {
                (
                    at(),
                    format!("unknown key `{key}` (keys are serve's flags)"),
                )
            })?;
        let flag = format!("--{key}");
        let args = flag_args(&flag, arg, value.get_ref()).map_err(|msg| (at(), msg))?;
        check(&args).map_err(|msg| (at(), msg))?;
        out.extend(args);
    }
    Ok(out)
}

/// `--flag value...` for one key.
fn flag_args(flag: &str, arg: &clap::Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let takes_value = arg.get_action().takes_values();
    let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        _ => Err(format!("{flag} takes a string or a number")),
    };
    match value {
        toml::Value::Boolean(on) if !takes_value => {
            Ok(if *on { vec![flag.to_owned()] } else { vec![] })
        }
        _ if !takes_value => Err(format!("{flag} is a switch: true or false")),
        toml::Value::Array(items) if repeatable => items
            .iter()
            .map(|v| Ok(vec![flag.to_owned(), scalar(v)?]))
            .collect::<Result<Vec<_>, String>>()
            .map(|pairs| pairs.concat()),
        toml::Value::Array(_) => Err(format!("{flag} takes one value, not an array")),
        v => Ok(vec![flag.to_owned(), scalar(v)?]),
    }
}

/// Runs the flag's own parser on `args` alone, so a bad value is reported at its line.
fn check(args: &[String]) -> Result<(), String> {
    let argv = ["archserve", "serve"]
        .into_iter()
        .map(str::to_owned)
        .chain(args.iter().cloned());
    Cli::command()
        .try_get_matches_from(argv)
        .map(|_| ())
        .map_err(|e| {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid value");
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        })
}

/// `line:column` (from 1) of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("{line}:{col}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        to_args(text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn every_kind_of_flag() {
        let text = r#"
port = 8080
root = "site"
idle-timeout = 2.5
dir-listing = true
reuseport = false
header = ["*.css: Cache-Control: no-cache", "/a/**: X-A: 1"]
"#;
        assert_eq!(
            args(text),
            [
                "--dir-listing",
                "--header",
                "*.css: Cache-Control: no-cache",
                "--header",
                "/a/**: X-A: 1",
                "--idle-timeout",
                "2.5",
                "--port",
                "8080",
                "--root",
                "site",
            ]
        );
    }

    #[test]
    fn listen_takes_an_array_of_addresses() {
        assert_eq!(
            args("listen = [\"127.0.0.1:8080\", \"[::1]:8080\"]"),
            ["--listen", "127.0.0.1:8080", "--listen", "[::1]:8080"]
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        for (text, at, why) in [
            ("port = 80\nnope = 1\n", "2:8", "unknown key `nope`"),
            ("port = \"x\"", "1:8", "invalid value 'x' for '--port"),
            ("\n\nport = 99999", "3:8", "--port"),
            ("dir-listing = 1", "1:15", "is a switch"),
            ("port = [1, 2]", "1:8", "not an array"),
            ("header = ['*.css']", "1:10", "expected `GLOB: Name: value`"),
            ("arch = \"nope\"", "1:8", "invalid value 'nope'"),
            ("port = 1\nport = 2", "2:1", "duplicate key"),
            ("port = ", "1:8", ""),
            ("config = \"x\"", "1:10", "unknown key `config`"),
        ] {
            let (where_, msg) = to_args(text).expect_err(text);
            assert_eq!(where_, at, "{text:?}: {msg}");
            assert!(msg.contains(why), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "{text:?}: one line: {msg}");
        }
    }

    #[test]
    fn the_file_goes_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "port = 1\ndir-listing = true\n").unwrap();
        let argv = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let p = path.to_str().unwrap();
        let got = expand(argv(&["archserve", "serve", "--config", p, "--port", "0"])).unwrap();
        assert_eq!(
            got,
            argv(&[
                "archserve",
                "serve",
                "--dir-listing",
                "--port",
                "1",
                "--config",
                p,
                "--port",
                "0"
            ])
        );
        let eq = format!("--config={p}");
        assert_eq!(expand(argv(&["archserve", "serve", &eq])).unwrap().len(), 6);
        // Nothing to do without the flag, or for another subcommand.
        let plain = argv(&["archserve", "send", "--config", p]);
        assert_eq!(expand(plain.clone()).unwrap(), plain);
        let missing = argv(&["archserve", "serve", "--config", "/nonexistent.toml"]);
        assert!(expand(missing)
            .unwrap_err()
            .starts_with("config /nonexistent.toml"));
    }
}

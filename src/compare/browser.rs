//! Headless Chromium (Debian's `chromium`, installed by scripts/install-test-deps): the
//! screenshot of report.html that compare keeps beside it, and the page as the browser sees it
//! (its DOM after loading, and the console messages it logged), which the tests check.
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::plan::find_program;

/// How long Chromium may take to load and draw a local page.
const LIMIT: Duration = Duration::from_secs(90);

/// The installed browser, if any.
pub fn find() -> Option<PathBuf> {
    find_program("chromium").or_else(|| find_program("chromium-browser"))
}

/// What the browser made of a page.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The DOM after loading, serialised.
    pub dom: String,
    /// Messages the page logged to its console (Chromium's `CONSOLE` log lines).
    pub console: Vec<String>,
}

/// Loads `page` headless and returns its DOM and console messages.
pub fn load(page: &Path) -> io::Result<Loaded> {
    let (dom, log) = chromium(&[
        "--enable-logging=stderr".into(),
        "--v=0".into(),
        "--dump-dom".into(),
        url(page)?,
    ])?;
    let console = log
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_string)
        .collect();
    Ok(Loaded { dom, console })
}

/// Draws `page` into `png` (a window as wide as a laptop's and tall enough for the whole
/// report); returns the file written.
pub fn screenshot(page: &Path, png: &Path) -> io::Result<PathBuf> {
    let html = std::fs::read_to_string(page)?;
    // Roughly: a chart is 560 px, a table row or paragraph line 26.
    let height = 600 + 600 * html.matches("<figure").count() + 26 * html.matches("<tr>").count();
    let png = std::path::absolute(png)?;
    chromium(&[
        format!("--screenshot={}", png.display()),
        format!("--window-size=1280,{}", height.min(16_000)),
        url(page)?,
    ])?;
    if !png.is_file() {
        return Err(io::Error::other("chromium wrote no screenshot"));
    }
    Ok(png)
}

fn url(page: &Path) -> io::Result<String> {
    Ok(format!("file://{}", std::fs::canonicalize(page)?.display()))
}

/// Runs chromium headless with `args` in a profile of its own; (stdout, stderr).
fn chromium(args: &[String]) -> io::Result<(String, String)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let bin = find().ok_or_else(|| io::Error::other("chromium is not installed"))?;
    let profile = std::env::temp_dir().join(format!(
        "archserve-chromium-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let mut cmd = Command::new(bin);
    // --no-sandbox: the sandbox cannot start as root (CI runs as root).
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ])
    .args(["--no-first-run", "--disable-extensions", "--mute-audio"])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let result = run_limited(&mut cmd);
    let _ = std::fs::remove_dir_all(&profile);
    result
}

/// Spawns `cmd`, collects both outputs, kills it after [`LIMIT`].
fn run_limited(cmd: &mut Command) -> io::Result<(String, String)> {
    let mut child = cmd.spawn()?;
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "chromium took more than {LIMIT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if !status.success() {
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(io::Error::other(format!(
            "chromium failed ({status}): {}",
            tail.join(" / ")
        )));
    }
    Ok((out, err))
}

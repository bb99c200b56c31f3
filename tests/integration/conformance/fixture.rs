//! The temporary document root every test serves (known files, dotfiles, symlinks out of the root, secrets next to it) and IMF-fixdate helpers.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Marker present in every file outside the document root; no response body may contain it.
pub const SECRET: &str = "TOP-SECRET";
/// Content of `ROOT/../secret.txt` (next to the root, the target of `..` attacks).
pub const PARENT_SECRET: &str = "TOP-SECRET-PARENT: never serve this\n";
/// Content of the file in another temporary directory that `ROOT/escape` links to.
pub const OUTSIDE_SECRET: &str = "TOP-SECRET-OUTSIDE: never serve this\n";
/// A line of `/etc/passwd`: the classic traversal target.
pub const PASSWD_MARKER: &str = "root:x:0:0";
/// Content of the fixture files.
pub const INDEX_HTML: &str =
    "<!DOCTYPE html>\n<html><head><title>root index</title></head><body>ROOT-INDEX</body></html>\n";
pub const SUB_INDEX_HTML: &str = "<!DOCTYPE html>\n<html><body>SUB-INDEX</body></html>\n";
pub const NOT_FOUND_HTML: &str = "<!DOCTYPE html>\n<html><body>CUSTOM-404-PAGE</body></html>\n";
pub const A_TXT: &str = "Hello from a.txt\nsecond line\n";
pub const STYLE_CSS: &str = "body { color: #123456; }\n";
pub const DOTENV: &str = "DOTENV-SECRET=hunter2\n";
pub const DOTGIT_CONFIG: &str = "[core]\n\tDOTGIT-SECRET = 1\n";
pub const HIDDEN: &str = "HIDDEN-SECRET\n";
/// Length of `data.bin` (ranges) and `big.bin` (streaming).
pub const DATA_LEN: usize = 100 * 1024;
pub const BIG_LEN: usize = 3 * 1024 * 1024 + 12345;
/// Every fixture file's mtime: 2020-01-01T00:00:00Z, so ETag and Last-Modified are known.
pub const MTIME_SECS: u64 = 1_577_836_800;

/// A minimal PNG signature plus padding (the server only looks at the extension).
pub fn png_bytes() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend((0u8..64).collect::<Vec<_>>());
    v
}

/// `data.bin`: a position-dependent pattern so a wrong offset shows up as a wrong byte.
pub fn data_bin() -> Vec<u8> {
    (0..DATA_LEN)
        .map(|i| ((i * 31 + i / 251) % 251) as u8)
        .collect()
}

/// `big.bin`: xorshift bytes, so reordered or repeated chunks are detected.
pub fn big_bin() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(BIG_LEN);
    while v.len() < BIG_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(BIG_LEN);
    v
}

/// The temporary tree: `parent/` holds `secret.txt` and the root `parent/www/`; `outside/` is a
/// separate temporary directory reached only through symlinks in the root.
pub struct Fixture {
    pub parent: tempfile::TempDir,
    pub outside: tempfile::TempDir,
    pub root: PathBuf,
}

fn write_file(path: &Path, content: &[u8]) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).expect("create fixture dir");
    }
    fs::write(path, content).expect("write fixture file");
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open fixture file");
    f.set_modified(UNIX_EPOCH + Duration::from_secs(MTIME_SECS))
        .expect("set fixture mtime");
}

impl Fixture {
    pub fn new(with_404: bool) -> Fixture {
        let parent = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("www");
        fs::create_dir(&root).expect("mkdir root");
        write_file(&parent.path().join("secret.txt"), PARENT_SECRET.as_bytes());
        write_file(
            &outside.path().join("outside.txt"),
            OUTSIDE_SECRET.as_bytes(),
        );
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("index.html", INDEX_HTML.into()),
            ("a.txt", A_TXT.into()),
            ("empty.txt", Vec::new()),
            ("style.css", STYLE_CSS.into()),
            ("img.png", png_bytes()),
            ("data.bin", data_bin()),
            ("big.bin", big_bin()),
            ("blob.qqqunknown", b"opaque bytes\n".to_vec()),
            ("with space.txt", b"SPACE-FILE\n".to_vec()),
            ("caf\u{e9}.txt", b"UTF8-FILE\n".to_vec()),
            ("sub/index.html", SUB_INDEX_HTML.into()),
            ("sub/page.txt", b"SUB-PAGE\n".to_vec()),
            ("sub/.hidden", HIDDEN.into()),
            (".env", DOTENV.into()),
            (".git/config", DOTGIT_CONFIG.into()),
        ];
        for (name, content) in files {
            write_file(&root.join(name), &content);
        }
        if with_404 {
            write_file(&root.join("404.html"), NOT_FOUND_HTML.as_bytes());
        }
        fs::create_dir(root.join("nodir")).expect("mkdir nodir");
        write_file(&root.join("nodir/file.txt"), b"NODIR-FILE\n");
        std::os::unix::fs::symlink(outside.path().join("outside.txt"), root.join("escape"))
            .expect("symlink escape");
        std::os::unix::fs::symlink(outside.path(), root.join("escdir")).expect("symlink escdir");
        std::os::unix::fs::symlink("../secret.txt", root.join("rel-escape"))
            .expect("symlink rel-escape");
        Fixture {
            parent,
            outside,
            root,
        }
    }

    /// The strong validator the contract specifies: `"<inode>-<mtime ns>-<ctime ns>-<len>"` in
    /// hex (the fixture's mtimes are old enough for a strong one).
    pub fn etag(&self, rel: &str) -> String {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(self.root.join(rel)).expect("fixture metadata");
        let ns = |s: i64, n: i64| (s as u64) * 1_000_000_000 + n as u64;
        format!(
            "\"{:x}-{:x}-{:x}-{:x}\"",
            meta.ino(),
            ns(meta.mtime(), meta.mtime_nsec()),
            ns(meta.ctime(), meta.ctime_nsec()),
            meta.len()
        )
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.root.join(rel)).expect("read fixture")
    }
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn days_to_civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn civil_to_days(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// IMF-fixdate of `secs` since the epoch, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = days_to_civil(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch of a strictly formatted IMF-fixdate (weekday checked), else None.
pub fn parse_imf_fixdate(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 29 || &s[3..5] != ", " || &s[25..] != " GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let t = &s[r];
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    let d = num(5..7)? as u32;
    let m = MONTHS.iter().position(|x| *x == &s[8..11])? as u32 + 1;
    let y = num(12..16)? as i64;
    let (hh, mm, ss) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = civil_to_days(y, m, d);
    if days < 0 || DAYS[days.rem_euclid(7) as usize] != &s[..3] {
        return None;
    }
    Some(days as u64 * 86_400 + hh * 3600 + mm * 60 + ss)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_secs()
}

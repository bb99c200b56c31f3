//! The document root every server of a run gets: a copy of `--root` in `<out>/www.tmp/`, plus
//! the two files some workloads need (the 1 MiB file of `big`, the file `fresh` rewrites), so
//! that nothing is written into the caller's root. Removed when the run ends. Inside the run
//! directory rather than /tmp, so that every server's command line names its run.
use std::io;
use std::path::{Path, PathBuf};

/// `big`: the file's name in the root, and its size.
pub const BIG_FILE: &str = "big.bin";
pub const BIG_SIZE: usize = 1 << 20;
/// `fresh`: the file rewritten and replaced between requests.
pub const FRESH_FILE: &str = "fresh.txt";
/// `cgi`: the folder of CGI scripts (archserve's `--cgi-dir`, lighttpd's mod_cgi) and the
/// script every request runs: a POSIX sh script printing a head and one line, so a request
/// costs a fork, an exec of /bin/sh and two pipes, and little else.
pub const CGI_DIR: &str = "cgi-bin";
pub const CGI_SCRIPT: &str = "bench.sh";
pub const CGI_PATH: &str = "/cgi-bin/bench.sh";

/// The scratch root; deleted on drop.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Copies `src` (directories and regular files; links are followed) to `dir(out)` and
    /// adds the workloads' files.
    pub fn create(src: &Path, out: &Path) -> io::Result<Scratch> {
        let dir = Scratch::dir(out);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let scratch = Scratch { dir };
        let root = scratch.root();
        copy_tree(src, &root)?;
        // Bytes that no server could compress or recognise: a simple generator, not zeros.
        let mut x: u32 = 0x2545_f491;
        let big: Vec<u8> = (0..BIG_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(root.join(BIG_FILE), big)?;
        std::fs::write(root.join(FRESH_FILE), "version 0\n")?;
        std::fs::create_dir_all(root.join(CGI_DIR))?;
        let script = root.join(CGI_DIR).join(CGI_SCRIPT);
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello from cgi\\n'\n",
        )?;
        // nginx's workers may run as another user: everything readable, directories enterable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(scratch)
    }

    /// Where a run writing to `out` keeps its scratch root.
    pub fn dir(out: &Path) -> PathBuf {
        out.join("www.tmp")
    }

    pub fn root(&self) -> PathBuf {
        self.dir.clone()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::metadata(&from)?;
        if meta.is_dir() {
            copy_tree(&from, &to)?;
        } else if meta.is_file() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_root_and_adds_the_workload_files_then_goes_away() {
        let src =
            std::env::temp_dir().join(format!("archserve-scratch-src-{}", std::process::id()));
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/a.txt"), "a").unwrap();
        let out = src.with_extension("out");
        let s = Scratch::create(&src, &out).unwrap();
        let root = s.root();
        assert_eq!(
            std::fs::read_to_string(root.join("sub/a.txt")).unwrap(),
            "a"
        );
        assert_eq!(
            std::fs::metadata(root.join(BIG_FILE)).unwrap().len(),
            BIG_SIZE as u64
        );
        assert!(root.join(FRESH_FILE).is_file());
        drop(s);
        assert!(!root.exists());
        std::fs::remove_dir_all(&src).unwrap();
        let _ = std::fs::remove_dir_all(&out);
    }
}

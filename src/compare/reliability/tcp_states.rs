//! The TCP state of every socket of this network namespace by inode, from the kernel's
//! sock_diag netlink interface (what `ss` uses), asked for every state but TIME_WAIT. The soak
//! needs it once per burst; /proc/net/tcp lists and formats the TIME_WAIT sockets too (24,000
//! after a minute of the soak's 400 connections a second), 38 ms of system time a read, ten
//! times what the burst's other looks cost. /proc/net/tcp{,6} is read only if netlink fails.
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// TCP_TIME_WAIT (include/net/tcp_states.h).
const TIME_WAIT: u8 = 6;
/// Every TCP state (1 ESTABLISHED … 11 CLOSING) but TIME_WAIT, as inet_diag's state mask.
const STATES: u32 = 0xffe & !(1 << TIME_WAIT);
/// sizeof(struct nlmsghdr), sizeof(struct inet_diag_req_v2).
const HEADER: usize = 16;
const REQUEST: usize = 56;
/// In struct inet_diag_msg: the state (byte 1) and the inode (after family, state, timer,
/// retrans, the 48-byte socket id, expires, rqueue, wqueue and uid).
const STATE_AT: usize = 1;
const INODE_AT: usize = 4 + 48 + 16;

/// inode → TCP state of the namespace's TCP sockets, IPv4 and IPv6 (TIME_WAIT left out).
pub fn states() -> io::Result<HashMap<u64, u8>> {
    let mut out = HashMap::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        match dump(family as u8) {
            Ok(rows) => out.extend(rows),
            Err(_) => return proc_tables(),
        }
    }
    Ok(out)
}

/// The same from /proc/net/tcp and tcp6.
fn proc_tables() -> io::Result<HashMap<u64, u8>> {
    let mut out = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        out.extend(proc_table(&std::fs::read_to_string(table)?));
    }
    Ok(out)
}

/// `(inode, state)` of each socket of a /proc/net/tcp or tcp6 table (header skipped).
pub fn proc_table(text: &str) -> Vec<(u64, u8)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            Some((f.get(9)?.parse().ok()?, state))
        })
        .collect()
}

/// One sock_diag dump of `family`'s TCP sockets.
fn dump(family: u8) -> io::Result<Vec<(u64, u8)>> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor just opened and owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let req = request(family);
    // SAFETY: `req` is a valid buffer of its length; the kernel is the default destination.
    let sent = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut rows = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if parse(&buf[..n as usize], &mut rows)? {
            return Ok(rows);
        }
    }
}

/// A dump request: nlmsghdr then inet_diag_req_v2 (TCP, [`STATES`], any address).
fn request(family: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + REQUEST);
    m.extend(((HEADER + REQUEST) as u32).to_ne_bytes());
    m.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend(((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    m.extend(1u32.to_ne_bytes()); // sequence
    m.extend(0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.extend([family, libc::IPPROTO_TCP as u8, 0, 0]);
    m.extend(STATES.to_ne_bytes());
    m.resize(HEADER + REQUEST, 0); // inet_diag_sockid: all zeros, any socket
    m
}

/// Appends the `(inode, state)` of each inet_diag_msg in one datagram of the answer; true at
/// the end of the dump.
fn parse(mut data: &[u8], rows: &mut Vec<(u64, u8)>) -> io::Result<bool> {
    let u32_at = |b: &[u8], i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_ne_bytes(s.try_into().unwrap_or_default()))
    };
    while data.len() >= HEADER {
        let len = u32_at(data, 0).unwrap_or(0) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < HEADER || len > data.len() {
            return Err(io::Error::other("a truncated netlink message"));
        }
        let body = &data[HEADER..len];
        match kind as i32 {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => {
                let errno = u32_at(body, 0).unwrap_or(0) as i32;
                return Err(io::Error::from_raw_os_error(-errno));
            }
            _ => {
                if let (Some(&state), Some(inode)) = (body.get(STATE_AT), u32_at(body, INODE_AT)) {
                    rows.push((u64::from(inode), state));
                }
            }
        }
        data = &data[(len + 3) & !3..];
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proc_table_gives_each_inode_its_state() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A0F5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4172 1 0 100 0 0 10 0
   1: 0100007F:A0F5 0100007F:D2A4 08 00000000:00000000 00:00000000 00000000     0        0 98231 1 0 20 4 30 10 -1
garbage
";
        assert_eq!(proc_table(text), vec![(4172, 0x0A), (98231, 0x08)]);
    }

    #[test]
    fn a_netlink_answer_is_read_to_its_end() {
        let msg = |kind: u16, body: &[u8]| {
            let mut m = ((HEADER + body.len()) as u32).to_ne_bytes().to_vec();
            m.extend(kind.to_ne_bytes());
            m.extend([0u8; 10]);
            m.extend(body);
            m.resize((m.len() + 3) & !3, 0);
            m
        };
        let mut diag = vec![0u8; 72];
        diag[STATE_AT] = 8;
        diag[INODE_AT..INODE_AT + 4].copy_from_slice(&98231u32.to_ne_bytes());
        let mut rows = Vec::new();
        assert!(!parse(&msg(SOCK_DIAG_BY_FAMILY, &diag), &mut rows).unwrap());
        let mut data = msg(SOCK_DIAG_BY_FAMILY, &diag);
        data.extend(msg(libc::NLMSG_DONE as u16, &[0; 4]));
        assert!(parse(&data, &mut rows).unwrap());
        assert_eq!(rows, vec![(98231, 8), (98231, 8)]);
        let refused = msg(libc::NLMSG_ERROR as u16, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parse(&refused, &mut rows).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert_eq!(request(2).len(), HEADER + REQUEST);
    }

    #[test]
    fn a_listener_of_this_process_is_found_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
        let inode: u64 = link.to_str().unwrap()[8..]
            .trim_end_matches(']')
            .parse()
            .unwrap();
        assert_eq!(states().unwrap().get(&inode), Some(&0x0A));
        // Netlink and /proc agree on it.
        assert_eq!(proc_tables().unwrap().get(&inode), Some(&0x0A));
    }
}

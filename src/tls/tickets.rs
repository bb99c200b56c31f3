//! Session-ticket keys that every worker process agrees on: a ticket issued by one `processes` or
//! `hybrid` worker is accepted by any other, and the key rotates at the same instant in all of
//! them without any message between them.
//!
//! How: the configuration is built before the workers are forked, with one random 32-byte
//! secret for the current 6-hour period. Every process advances it on its own, by the clock, with
//! a one-way step (HKDF-SHA256), `secret(p + 1) = HKDF(secret(p), "next")`, and forgets the old
//! one; the period's ChaCha20-Poly1305 key is `HKDF(secret(p), "key")`. Same start, same clock,
//! so the same keys everywhere. A ticket is accepted during the period that issued it and the
//! next one (6 to 12 hours). A worker only holds the current and previous keys, so a worker's
//! memory does not reveal older keys; the supervisor keeps the secret it forked with (it never
//! serves, and a replacement worker it forks steps the secret forward to the present first).
//!
//! rustls' own `Ticketer` draws its keys at random at every rotation (so workers' keys drift
//! apart after the first 6 hours), and rejects a ticket longer than any it has issued itself (so
//! a worker that has issued none rejects all): both break resumption across processes.
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Prk, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// Seconds per key period (rustls' default rotation).
pub const PERIOD: u64 = 6 * 60 * 60;
/// A ticket: period (4 bytes, big-endian, also the AAD) + nonce + encrypted state + tag.
const HEADER: usize = 4 + NONCE_LEN;
const TAG: usize = 16;
/// rustls' ticket plaintext (the resumption secret, SNI, ALPN, no client certificate here) is
/// about 100 bytes; anything far longer is not ours and is rejected before any decryption.
const MAX_TICKET: usize = 2048;

/// The shared-secret ticketer (see the module documentation).
pub struct Tickets {
    state: Mutex<State>,
    rng: SystemRandom,
}

struct State {
    period: u64,
    secret: [u8; 32],
    current: LessSafeKey,
    previous: Option<LessSafeKey>,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tickets")
    }
}

impl Tickets {
    /// A fresh random secret for the current period.
    pub fn new() -> Result<Tickets, String> {
        let rng = SystemRandom::new();
        let mut secret = [0u8; 32];
        rng.fill(&mut secret)
            .map_err(|_| "no random numbers for the ticket key")?;
        Ok(Tickets::from_secret(secret, period_now(), rng))
    }

    fn from_secret(secret: [u8; 32], period: u64, rng: SystemRandom) -> Tickets {
        let current = key(&secret);
        Tickets {
            state: Mutex::new(State {
                period,
                secret,
                current,
                previous: None,
            }),
            rng,
        }
    }

    /// Runs `f` on the keys of `now`'s period (stepping the secret forward to it first).
    fn with_keys<T>(&self, now: u64, f: impl FnOnce(&State) -> T) -> Option<T> {
        let mut s = self.state.lock().ok()?;
        // A clock that went back keeps the newest keys: a secret cannot step back.
        while s.period < now {
            let next = expand(&s.secret, b"archserve ticket secret next");
            s.period += 1;
            s.secret = next;
            let key = key(&s.secret);
            let old = std::mem::replace(&mut s.current, key);
            // Only a one-period step keeps the old key as "previous".
            s.previous = (s.period == now).then_some(old);
        }
        Some(f(&s))
    }

    fn seal(&self, now: u64, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        self.with_keys(now, |s| {
            let id = (s.period as u32).to_be_bytes();
            let mut out = Vec::with_capacity(HEADER + plain.len() + TAG);
            out.extend_from_slice(&id);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(plain);
            let tag = s
                .current
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(id),
                    &mut out[HEADER..],
                )
                .ok()?;
            out.extend_from_slice(tag.as_ref());
            Some(out)
        })?
    }

    fn open(&self, now: u64, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < HEADER + TAG || ticket.len() > MAX_TICKET {
            return None;
        }
        let id: [u8; 4] = ticket[..4].try_into().ok()?;
        let nonce: [u8; NONCE_LEN] = ticket[4..HEADER].try_into().ok()?;
        let mut body = ticket[HEADER..].to_vec();
        let issued = u32::from_be_bytes(id);
        self.with_keys(now, |s| {
            let key = if issued == s.period as u32 {
                &s.current
            } else if issued == (s.period as u32).wrapping_sub(1) {
                s.previous.as_ref()?
            } else {
                return None;
            };
            let plain = key
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(id),
                    &mut body,
                )
                .ok()?;
            Some(plain.len())
        })?
        .map(|n| {
            body.truncate(n);
            body
        })
    }
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    /// The shortest time a ticket stays valid (issued at the end of its period).
    fn lifetime(&self) -> u32 {
        PERIOD as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(period_now(), plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(period_now(), cipher)
    }
}

fn period_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / PERIOD)
}

/// HKDF-SHA256 (RFC 5869) of `secret` with `info`, 32 bytes.
fn expand(secret: &[u8; 32], info: &[u8]) -> [u8; 32] {
    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = [0u8; 32];
    let info = [info];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand and fill cannot fail.
    if let Ok(okm) = Prk::new_less_safe(HKDF_SHA256, secret).expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

fn key(secret: &[u8; 32]) -> LessSafeKey {
    let bytes = expand(secret, b"archserve ticket key");
    // A 32-byte key is exactly ChaCha20-Poly1305's length.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("32-byte key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(period: u64) -> (Tickets, Tickets) {
        let secret = [7u8; 32];
        let a = Tickets::from_secret(secret, period, SystemRandom::new());
        let b = Tickets::from_secret(secret, period, SystemRandom::new());
        (a, b)
    }

    #[test]
    fn another_process_with_the_same_start_opens_the_ticket() {
        let (a, b) = pair(100);
        let t = a.seal(100, b"state").unwrap();
        assert_eq!(b.open(100, &t).as_deref(), Some(&b"state"[..]));
        // Both stepped forward on their own, one period: still accepted (previous key), and a
        // ticket of the new period too.
        assert_eq!(b.open(101, &t).as_deref(), Some(&b"state"[..]));
        let t2 = a.seal(101, b"new").unwrap();
        assert_eq!(b.open(101, &t2).as_deref(), Some(&b"new"[..]));
        // Two periods later the first is refused, the second still accepted.
        assert_eq!(a.open(102, &t), None);
        assert_eq!(a.open(102, &t2).as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn a_jump_of_several_periods_keeps_no_stale_previous_key() {
        let (a, b) = pair(10);
        let t = a.seal(10, b"x").unwrap();
        // b stepped 10 → 13 at once: 12's key was never used, 10's is gone.
        assert_eq!(b.open(13, &t), None);
        let t13 = a.seal(13, b"y").unwrap();
        assert_eq!(b.open(13, &t13).as_deref(), Some(&b"y"[..]));
    }

    #[test]
    fn forged_truncated_or_foreign_tickets_are_refused() {
        let (a, _) = pair(5);
        let other = Tickets::from_secret([8u8; 32], 5, SystemRandom::new());
        let t = a.seal(5, b"state").unwrap();
        assert_eq!(other.open(5, &t), None);
        let mut flipped = t.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(a.open(5, &flipped), None);
        let mut relabelled = t.clone();
        relabelled[3] ^= 1;
        assert_eq!(a.open(5, &relabelled), None);
        for len in [0, 3, HEADER, HEADER + TAG - 1] {
            assert_eq!(a.open(5, &t[..len.min(t.len())]), None, "{len}");
        }
        assert_eq!(a.open(5, &vec![0u8; MAX_TICKET + 1]), None);
        // Two tickets of the same state differ (random nonces).
        assert_ne!(a.seal(5, b"state").unwrap(), t);
    }
}

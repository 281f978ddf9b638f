//! `UPGRADE_RATE_PER_IP`: one token bucket per client address, shared by every worker, checked
//! once per upgrade request (not per message).
//!
//! IPv6 addresses count per /64 (one subscriber's prefix), IPv4 ones per address. The table is
//! split into shards behind their own locks; a shard forgets the addresses whose buckets have
//! refilled when it fills up, and when it is still full of busy addresses new ones are refused
//! (fail closed: a flood from many addresses cannot grow memory without bound).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::{Bucket, Rate, Refused};

const SHARDS: usize = 16;
/// Addresses remembered per shard.
pub const SHARD_CAPACITY: usize = 16_384;

/// The per-address upgrade buckets.
#[derive(Debug)]
pub struct PerIp {
    rate: Rate,
    shards: Vec<Mutex<HashMap<u128, Bucket>>>,
}

impl PerIp {
    /// A table limiting every address to `rate`.
    pub fn new(rate: Rate) -> PerIp {
        PerIp {
            rate,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one upgrade for `ip` at `now` (nanoseconds).
    pub fn try_upgrade(&self, ip: IpAddr, now: u64) -> Result<(), Refused> {
        let key = key(ip);
        let shard = &self.shards[(key as usize ^ (key >> 64) as usize) % SHARDS];
        // A poisoned lock only means another worker panicked mid-update of a bucket; the map
        // is still a valid map.
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&key) && map.len() >= SHARD_CAPACITY {
            let rate = self.rate;
            map.retain(|_, b| b.tokens(now, &rate) < rate.capacity());
            if map.len() >= SHARD_CAPACITY {
                return Err(Refused::RetryAfterMs(1000));
            }
        }
        map.entry(key)
            .or_insert_with(Bucket::full)
            .try_take(1, now, &self.rate)
    }
}

/// The table key of an address: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => (u128::from(v6) >> 64 << 64) | 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn each_address_has_its_own_bucket() {
        let t = PerIp::new("2/1".parse().expect("rate"));
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert!(t.try_upgrade(a, S).is_ok());
        assert!(t.try_upgrade(a, S).is_ok());
        assert_eq!(t.try_upgrade(a, S), Err(Refused::RetryAfterMs(1000)));
        assert!(t.try_upgrade(b, S).is_ok());
        assert!(t.try_upgrade(a, 2 * S).is_ok());
        // The mapped form of an IPv4 address is the same client.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped());
        assert!(t.try_upgrade(mapped, S).is_ok());
        assert!(t.try_upgrade(b, S).is_err());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = PerIp::new("1/1".parse().expect("rate"));
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().expect("ip");
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(t.try_upgrade(IpAddr::V6(a), S).is_ok());
        assert!(t.try_upgrade(IpAddr::V6(b), S).is_err());
        assert!(t.try_upgrade(IpAddr::V6(c), S).is_ok());
    }

    #[test]
    fn a_full_table_forgets_idle_addresses_and_refuses_when_all_are_busy() {
        let t = PerIp::new("1/1".parse().expect("rate"));
        let n = (SHARDS * SHARD_CAPACITY) as u32;
        let mut refused = 0;
        for i in 0..n + 1000 {
            if t.try_upgrade(IpAddr::V4(Ipv4Addr::from(i)), S).is_err() {
                refused += 1;
            }
        }
        assert!(refused >= 1000, "busy table refused only {refused}");
        let size: usize = t.shards.iter().map(|s| s.lock().expect("lock").len()).sum();
        assert!(size <= n as usize);
        // A second later every bucket has refilled: room again.
        assert!(
            t.try_upgrade(IpAddr::V4(Ipv4Addr::from(n + 5000)), 3 * S)
                .is_ok()
        );
    }
}

//! Host names resolved once a minute per host instead of once per request.
//!
//! ureq resolves the host of every request, also when a pooled connection is then used,
//! and while a timeout is set (the agents always set one) it does so on a thread of its
//! own, spawned for that one lookup. That was a thread, with its 2 MiB stack mapped and
//! unmapped again, for every Genesys request and every InfluxDB write: about 20 a second
//! at 1,000 queues polled every second (`strace` of the static binary), each unmapping a
//! TLB flush on every core the process runs on. Under musl, which keeps no DNS cache, a
//! host name also meant a DNS query per request.
//!
//! Here an IP address is used as it is, without a lookup, and a name is looked up by
//! ureq's own resolver (same timeout, same thread) at most once per [`TTL`]: a changed
//! DNS record (a failover) is followed within a minute. When a lookup fails, the last
//! answer for that host is used again (serve-stale, RFC 8767), so a DNS outage does not
//! fail polls and writes to servers that are still there; failed lookups are not kept.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a looked-up address is used before it is looked up again.
pub const TTL: Duration = Duration::from_secs(60);
/// Hosts remembered at once: an agent talks to two or three (API, login, InfluxDB).
const MAX_HOSTS: usize = 8;

/// A [`Resolver`] that answers IP addresses itself and remembers `inner`'s answers for
/// names.
#[derive(Debug)]
pub struct CachingResolver<R = DefaultResolver> {
    inner: R,
    cache: Mutex<Cache>,
}

impl Default for CachingResolver {
    fn default() -> Self {
        CachingResolver::new(DefaultResolver::default())
    }
}

impl<R: Resolver> CachingResolver<R> {
    pub fn new(inner: R) -> Self {
        CachingResolver {
            inner,
            cache: Mutex::new(Cache::default()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A lookup that panicked left the cache as it was.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<R: Resolver> Resolver for CachingResolver<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(host_port) = host_and_port(uri) else {
            return self.inner.resolve(uri, config, timeout);
        };
        if let Ok(address) = host_port.parse::<SocketAddr>() {
            let mut addresses = self.empty();
            for wanted in config.ip_family().keep_wanted(std::iter::once(address)) {
                addresses.push(wanted);
            }
            return if addresses.is_empty() {
                Err(ureq::Error::HostNotFound)
            } else {
                Ok(addresses)
            };
        }
        let now = Instant::now();
        let known = self.cache().get(&host_port);
        match known {
            Some((addresses, at)) if now.saturating_duration_since(at) < TTL => Ok(addresses),
            stale => match self.inner.resolve(uri, config, timeout) {
                Ok(addresses) => {
                    self.cache().put(host_port, addresses.clone(), now);
                    Ok(addresses)
                }
                Err(error) => stale.map(|(addresses, _)| addresses).ok_or(error),
            },
        }
    }
}

/// `host:port` as ureq looks it up (`[v6]:port` for an IPv6 address), the port defaulted
/// from the scheme; `None` for a URI ureq would refuse anyway.
fn host_and_port(uri: &Uri) -> Option<String> {
    DefaultResolver::host_and_port(uri.scheme()?, uri.authority()?)
}

/// The answers of the last lookups and when each was made.
#[derive(Debug, Default)]
struct Cache {
    entries: Vec<(String, ResolvedSocketAddrs, Instant)>,
}

impl Cache {
    fn get(&self, host_port: &str) -> Option<(ResolvedSocketAddrs, Instant)> {
        self.entries
            .iter()
            .find(|(host, _, _)| host == host_port)
            .map(|(_, addresses, at)| (addresses.clone(), *at))
    }

    fn put(&mut self, host_port: String, addresses: ResolvedSocketAddrs, now: Instant) {
        self.entries.retain(|(host, _, _)| *host != host_port);
        if self.entries.len() >= MAX_HOSTS {
            self.entries.remove(0);
        }
        self.entries.push((host_port, addresses, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use ureq::config::IpFamily;
    use ureq::Timeout;

    /// Answers every name with 192.0.2.7 and counts the lookups; fails them while its
    /// flag is set.
    #[derive(Debug, Default)]
    struct Counting(AtomicUsize, AtomicBool);

    impl Resolver for Counting {
        fn resolve(
            &self,
            uri: &Uri,
            _: &Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if self.1.load(Ordering::SeqCst) {
                return Err(ureq::Error::HostNotFound);
            }
            let port = host_and_port(uri)
                .and_then(|h| h.rsplit(':').next()?.parse().ok())
                .unwrap_or(0);
            let mut addresses = self.empty();
            addresses.push(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                port,
            ));
            Ok(addresses)
        }
    }

    fn timeout() -> NextTimeout {
        NextTimeout {
            after: Duration::from_secs(5).into(),
            reason: Timeout::Global,
            per_read: None,
            per_write: None,
        }
    }

    fn resolve(resolver: &CachingResolver<Counting>, url: &str) -> Vec<SocketAddr> {
        resolve_with(resolver, url, &Config::default())
    }

    fn resolve_with(
        resolver: &CachingResolver<Counting>,
        url: &str,
        config: &Config,
    ) -> Vec<SocketAddr> {
        let uri: Uri = url.parse().unwrap();
        match resolver.resolve(&uri, config, timeout()) {
            Ok(addresses) => addresses.iter().copied().collect(),
            Err(_) => Vec::new(),
        }
    }

    fn lookups(resolver: &CachingResolver<Counting>) -> usize {
        resolver.inner.0.load(Ordering::SeqCst)
    }

    #[test]
    fn ip_addresses_are_used_as_they_are_without_a_lookup() {
        let resolver = CachingResolver::new(Counting::default());
        assert_eq!(
            resolve(&resolver, "http://127.0.0.1:8086/write"),
            ["127.0.0.1:8086".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&resolver, "https://[::1]/api/v2/analytics"),
            ["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(lookups(&resolver), 0);
    }

    #[test]
    fn an_address_of_the_unwanted_family_is_not_found() {
        let resolver = CachingResolver::new(Counting::default());
        let v4_only = Config::builder().ip_family(IpFamily::Ipv4Only).build();
        assert!(resolve_with(&resolver, "http://[::1]:8086/", &v4_only).is_empty());
        assert_eq!(
            resolve_with(&resolver, "http://10.1.2.3:8086/", &v4_only).len(),
            1
        );
    }

    #[test]
    fn a_name_is_looked_up_once_per_host_and_port() {
        let resolver = CachingResolver::new(Counting::default());
        for _ in 0..3 {
            assert_eq!(
                resolve(&resolver, "https://api.mypurecloud.de/api/v2/x"),
                ["192.0.2.7:443".parse::<SocketAddr>().unwrap()]
            );
        }
        assert_eq!(lookups(&resolver), 1);
        resolve(&resolver, "https://login.mypurecloud.de/oauth/token");
        resolve(&resolver, "http://api.mypurecloud.de:8080/");
        assert_eq!(lookups(&resolver), 3);
    }

    /// Ages every cached answer by `age`.
    fn age(resolver: &CachingResolver<Counting>, age: Duration) {
        for (_, _, at) in &mut resolver.cache().entries {
            *at -= age;
        }
    }

    #[test]
    fn an_answer_is_used_for_the_ttl_then_looked_up_again() {
        let resolver = CachingResolver::new(Counting::default());
        resolve(&resolver, "https://api.usw2.pure.cloud/");
        age(&resolver, TTL - Duration::from_secs(1));
        resolve(&resolver, "https://api.usw2.pure.cloud/");
        assert_eq!(lookups(&resolver), 1);
        age(&resolver, Duration::from_secs(1));
        resolve(&resolver, "https://api.usw2.pure.cloud/");
        assert_eq!(lookups(&resolver), 2);
    }

    #[test]
    fn a_failed_lookup_uses_the_last_answer_and_without_one_fails() {
        let resolver = CachingResolver::new(Counting::default());
        resolve(&resolver, "https://api.usw2.pure.cloud/");
        resolver.inner.1.store(true, Ordering::SeqCst);
        age(&resolver, TTL);
        assert_eq!(
            resolve(&resolver, "https://api.usw2.pure.cloud/"),
            ["192.0.2.7:443".parse::<SocketAddr>().unwrap()]
        );
        assert!(resolve(&resolver, "https://login.usw2.pure.cloud/").is_empty());
        resolver.inner.1.store(false, Ordering::SeqCst);
        assert_eq!(
            resolve(&resolver, "https://login.usw2.pure.cloud/").len(),
            1
        );
        assert_eq!(lookups(&resolver), 4);
    }

    #[test]
    fn the_cache_keeps_at_most_max_hosts_the_newest() {
        let start = Instant::now();
        let mut cache = Cache::default();
        let empty = CachingResolver::new(Counting::default()).empty();
        for i in 0..MAX_HOSTS + 3 {
            cache.put(format!("h{i}:80"), empty.clone(), start);
            cache.put(format!("h{i}:80"), empty.clone(), start);
        }
        assert_eq!(cache.entries.len(), MAX_HOSTS);
        assert!(cache.get("h0:80").is_none());
        assert!(cache.get(&format!("h{}:80", MAX_HOSTS + 2)).is_some());
    }
}

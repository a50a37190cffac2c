//! Which way each connection goes: directly, through a proxy's `CONNECT` tunnel, or to
//! an HTTP proxy as an absolute-form request, decided per destination.
//!
//! ureq's own proxy support takes the first of `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY`
//! for every destination, tunnels plain `http://` through `CONNECT` (which most
//! corporate proxies allow to port 443 only), ignores a proxy URL it cannot use, and
//! reads `NO_PROXY` by rules of its own. So the agent is built without a ureq proxy, and
//! [`RouteConnector`] (first in the connector chain) and [`RoutedResolver`] ask
//! [`route`] instead, which applies the variables as curl does:
//!
//! | destination | proxy variable | how |
//! |---|---|---|
//! | `https://` (Genesys, an HTTPS InfluxDB) | `HTTPS_PROXY`, else `ALL_PROXY` | `CONNECT host:443`, TLS end to end through the tunnel |
//! | `http://` (a plain InfluxDB) | `HTTP_PROXY`, else `ALL_PROXY` | the request itself sent to the proxy with its absolute URL (`POST http://influx:8086/write?…`), as curl does (`forward`) |
//! | listed in `NO_PROXY`, or the proxy itself | | directly |
//!
//! A proxy that answers 407 fails the request with a message naming the variable to put
//! the credentials in (never the credentials).

use std::fmt;
use std::sync::Arc;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectProxyConnector, ConnectionDetails, Connector, Either, NextTimeout, Transport,
};

use super::forward::AbsoluteForm;
use crate::config::{ProxyConfig, ProxyUrl};

/// How a connection to one destination is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Direct(Direct),
    /// `CONNECT` through the proxy (`https://` destinations).
    Tunnel(&'a ProxyUrl),
    /// Requests in absolute form to the proxy (`http://` destinations).
    Forward(&'a ProxyUrl),
}

/// Why a destination is reached directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// No proxy variable serves its scheme.
    NoProxySet,
    /// `NO_PROXY` lists it.
    Listed,
    /// It is one of the proxies (a connection to a proxy is never proxied itself).
    IsTheProxy,
}

/// The route to `scheme://host:port` (`host` as a URL carries it, `[v6]` bracketed).
pub fn route<'a>(proxies: &'a ProxyConfig, https: bool, host: &str, port: u16) -> Route<'a> {
    let proxy = if https {
        proxies.https.as_ref()
    } else {
        proxies.http.as_ref()
    };
    let is_a_proxy = proxies
        .https
        .iter()
        .chain(&proxies.http)
        .any(|p| p.port == port && p.host.eq_ignore_ascii_case(host));
    match proxy {
        None => Route::Direct(Direct::NoProxySet),
        Some(_) if is_a_proxy => Route::Direct(Direct::IsTheProxy),
        Some(_) if proxies.no_proxy.matches(host, port) => Route::Direct(Direct::Listed),
        Some(p) if https => Route::Tunnel(p),
        Some(p) => Route::Forward(p),
    }
}

/// The route to a URI; `None` for a URI without host (ureq refuses it anyway).
fn route_to<'a>(proxies: &'a ProxyConfig, uri: &Uri) -> Option<Route<'a>> {
    let https = uri.scheme_str() == Some("https");
    let authority = uri.authority()?;
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Some(route(proxies, https, authority.host(), port))
}

/// What `check` prints for one destination URL (credentials hidden).
pub fn describe(proxies: &ProxyConfig, url: &str) -> String {
    let Ok(uri) = url.parse::<Uri>() else {
        return "direct".to_string();
    };
    let scheme_variables = if uri.scheme_str() == Some("https") {
        "HTTPS_PROXY"
    } else {
        "HTTP_PROXY"
    };
    match route_to(proxies, &uri) {
        None | Some(Route::Direct(Direct::NoProxySet)) => {
            format!("direct (no {scheme_variables} or ALL_PROXY set)")
        }
        Some(Route::Direct(Direct::Listed)) => format!(
            "direct ({} lists it)",
            proxies.no_proxy_variable.unwrap_or("NO_PROXY")
        ),
        Some(Route::Direct(Direct::IsTheProxy)) => "direct (it is the proxy)".to_string(),
        Some(Route::Tunnel(p)) => format!("via proxy {p} from {} (CONNECT tunnel)", p.variable),
        Some(Route::Forward(p)) => format!(
            "via proxy {p} from {} (plain HTTP, absolute-form requests)",
            p.variable
        ),
    }
}

/// The message of a 407 from `proxy`: where the credentials go, never what they are.
pub fn proxy_auth_message(proxy: &ProxyUrl) -> String {
    let variable = proxy.variable;
    if proxy.has_credentials() {
        format!(
            "proxy {proxy} answered 407: it refused the credentials in {variable}; check the \
             user and password there (percent-encode @ : / % as %40 %3A %2F %25)"
        )
    } else {
        format!(
            "proxy {proxy} answered 407: the proxy wants credentials: put them in {variable} \
             as http://user:pass@host:port"
        )
    }
}

/// First in the agent's connector chain: opens the proxied connections itself, and
/// leaves direct ones to the TCP and TLS connectors after it.
pub struct RouteConnector {
    proxies: Arc<ProxyConfig>,
    /// The agent's configuration with the `https` proxy set, for ureq's `CONNECT`.
    tunnel_config: Option<Config>,
    input_buffer: usize,
    output_buffer: usize,
}

impl RouteConnector {
    /// `agent_config` builds the agent's configuration with a given ureq proxy.
    pub fn new(
        proxies: Arc<ProxyConfig>,
        agent_config: impl Fn(Option<ureq::Proxy>) -> Config,
        (input_buffer, output_buffer): (usize, usize),
    ) -> Result<Self, String> {
        let tunnel_config = proxies
            .https
            .as_ref()
            .map(|p| ureq_proxy(p).map(|proxy| agent_config(Some(proxy))))
            .transpose()?;
        Ok(RouteConnector {
            proxies,
            tunnel_config,
            input_buffer,
            output_buffer,
        })
    }

    fn tunnel(
        &self,
        details: &ConnectionDetails,
        proxy: &ProxyUrl,
    ) -> Result<Box<dyn Transport>, ureq::Error> {
        let Some(config) = &self.tunnel_config else {
            return Err(ureq::Error::ConnectProxyFailed(format!(
                "no tunnel set up for {proxy}"
            )));
        };
        let tunnel_details = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: details.register_shutdown.clone(),
        };
        let connected = Connector::<Box<dyn Transport>>::connect(
            &ConnectProxyConnector::default(),
            &tunnel_details,
            None,
        )
        .map_err(|e| explain_proxy_failure(e, proxy))?;
        match connected {
            Some(Either::A(transport) | Either::B(transport)) => Ok(transport),
            None => Err(ureq::Error::ConnectProxyFailed(format!(
                "no tunnel through {proxy}"
            ))),
        }
    }

    fn forward(
        &self,
        details: &ConnectionDetails,
        proxy: &ProxyUrl,
    ) -> Result<Box<dyn Transport>, ureq::Error> {
        let proxy_uri: Uri = format!("http://{}:{}/", proxy.host, proxy.port)
            .parse()
            .map_err(|_| ureq::Error::InvalidProxyUrl)?;
        let addrs = details
            .resolver
            .resolve(&proxy_uri, details.config, details.timeout)
            .map_err(|e| explain_proxy_failure(e, proxy))?;
        let proxy_details = ConnectionDetails {
            uri: &proxy_uri,
            addrs,
            config: details.config,
            request_level: details.request_level,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: details.register_shutdown.clone(),
        };
        let transport =
            (details.run_connector)(&proxy_details).map_err(|e| explain_proxy_failure(e, proxy))?;
        let authority = details
            .uri
            .authority()
            .map(|a| a.as_str())
            .ok_or(ureq::Error::InvalidProxyUrl)?;
        Ok(Box::new(AbsoluteForm::new(
            transport,
            format!("http://{authority}"),
            proxy,
            (self.input_buffer, self.output_buffer),
        )))
    }
}

impl Connector<()> for RouteConnector {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        match route_to(&self.proxies, details.uri) {
            None | Some(Route::Direct(_)) => Ok(None),
            Some(Route::Tunnel(proxy)) => self.tunnel(details, proxy).map(Some),
            Some(Route::Forward(proxy)) => self.forward(details, proxy).map(Some),
        }
    }
}

impl fmt::Debug for RouteConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteConnector")
            .field("proxies", &self.proxies)
            .finish()
    }
}

/// Looks up only what is reached directly: a proxied host is resolved by the proxy (it
/// may have no address in the local DNS at all).
#[derive(Debug)]
pub struct RoutedResolver<R> {
    pub proxies: Arc<ProxyConfig>,
    pub inner: R,
}

impl<R: Resolver> Resolver for RoutedResolver<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match route_to(&self.proxies, uri) {
            Some(Route::Tunnel(_) | Route::Forward(_)) => Ok(self.empty()),
            None | Some(Route::Direct(_)) => self.inner.resolve(uri, config, timeout),
        }
    }
}

fn ureq_proxy(proxy: &ProxyUrl) -> Result<ureq::Proxy, String> {
    let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
        // An IPv6 address keeps its brackets: ureq builds a URL of it.
        .host(&proxy.host)
        .port(proxy.port);
    if let Some(user) = &proxy.username {
        builder = builder.username(user);
    }
    if let Some(password) = &proxy.password {
        builder = builder.password(password.expose());
    }
    builder
        .build()
        .map_err(|_| format!("{}: {proxy} cannot be used as a proxy", proxy.variable))
}

/// A failure to reach or use the proxy, with the proxy and its variable named (so it is
/// not taken for the destination's), and a 407 explained.
fn explain_proxy_failure(error: ureq::Error, proxy: &ProxyUrl) -> ureq::Error {
    let reason = match error {
        ureq::Error::ConnectProxyFailed(reason) if reason.contains("407") => {
            return ureq::Error::ConnectProxyFailed(proxy_auth_message(proxy))
        }
        ureq::Error::ConnectProxyFailed(reason) => reason,
        other => super::describe_error(&other),
    };
    ureq::Error::ConnectProxyFailed(format!("proxy {proxy} from {}: {reason}", proxy.variable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::no_proxy::NoProxy;

    fn proxy(variable: &'static str, host: &str, port: u16) -> ProxyUrl {
        ProxyUrl {
            variable,
            host: host.to_string(),
            port,
            username: None,
            password: None,
        }
    }

    fn both(no_proxy: &str) -> ProxyConfig {
        ProxyConfig {
            https: Some(proxy("HTTPS_PROXY", "secure", 3128)),
            http: Some(proxy("HTTP_PROXY", "plain", 8080)),
            no_proxy: NoProxy::parse(no_proxy),
            no_proxy_variable: Some("NO_PROXY"),
        }
    }

    #[test]
    fn each_scheme_takes_its_proxy_unless_no_proxy_lists_it() {
        let config = both("localhost, 10.0.0.0/8");
        assert!(
            matches!(route(&config, true, "api.mypurecloud.com", 443), Route::Tunnel(p) if p.host == "secure")
        );
        assert!(
            matches!(route(&config, false, "influx", 8086), Route::Forward(p) if p.host == "plain")
        );
        assert_eq!(
            route(&config, false, "10.1.2.3", 8086),
            Route::Direct(Direct::Listed)
        );
        assert_eq!(
            route(&config, true, "localhost", 443),
            Route::Direct(Direct::Listed)
        );
        assert_eq!(
            route(&config, false, "plain", 8080),
            Route::Direct(Direct::IsTheProxy)
        );
        // The HTTPS proxy is reached as http://secure:3128: directly, not through
        // HTTP_PROXY (and the other way round).
        assert_eq!(
            route(&config, false, "secure", 3128),
            Route::Direct(Direct::IsTheProxy)
        );
        assert_eq!(
            route(&config, true, "plain", 8080),
            Route::Direct(Direct::IsTheProxy)
        );
        let https_only = ProxyConfig {
            http: None,
            ..both("")
        };
        assert_eq!(
            route(&https_only, false, "influx", 8086),
            Route::Direct(Direct::NoProxySet)
        );
    }

    #[test]
    fn check_describes_each_route_without_credentials() {
        let mut config = both("127.0.0.1");
        config.https = Some(ProxyUrl {
            username: Some("user".into()),
            password: Some(crate::config::Secret::new("pa55")),
            ..proxy("HTTPS_PROXY", "secure", 3128)
        });
        assert_eq!(
            describe(&config, "https://api.mypurecloud.com"),
            "via proxy http://***@secure:3128 from HTTPS_PROXY (CONNECT tunnel)"
        );
        assert_eq!(
            describe(&config, "http://influx:8086"),
            "via proxy http://plain:8080 from HTTP_PROXY (plain HTTP, absolute-form requests)"
        );
        assert_eq!(
            describe(&config, "http://127.0.0.1:8086"),
            "direct (NO_PROXY lists it)"
        );
        assert_eq!(
            describe(&ProxyConfig::default(), "https://x"),
            "direct (no HTTPS_PROXY or ALL_PROXY set)"
        );
    }

    #[test]
    fn a_407_names_the_variable_and_never_the_credentials() {
        let without = proxy("https_proxy", "p", 3128);
        assert_eq!(
            proxy_auth_message(&without),
            "proxy http://p:3128 answered 407: the proxy wants credentials: put them in \
             https_proxy as http://user:pass@host:port"
        );
        let with = ProxyUrl {
            username: Some("u".into()),
            password: Some(crate::config::Secret::new("pa55")),
            ..without
        };
        let message = proxy_auth_message(&with);
        assert!(
            message.contains("refused the credentials in https_proxy"),
            "{message}"
        );
        assert!(!message.contains("pa55"), "{message}");
    }
}

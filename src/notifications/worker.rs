//! One notification channel's thread: it follows its slice of the selected queues
//! (`topic::slice`), keeps a channel subscribed to their topics and a websocket open on it,
//! and turns each message about a followed queue into a [`QueueChanged`] hint for the
//! poller.
//!
//! Keeping it alive: a socket silent for twice the heartbeat period (`watchdog`) or
//! announced closing (`v2.system.socket_closing`) is reopened at once; a channel is
//! replaced by a new, subscribed and connected one before it expires, and only then is
//! the old socket closed, so no change goes unheard; a channel the server no longer knows
//! (the websocket upgrade answered 4xx) is created anew. Failures wait as `outage` says.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rustls::ClientConfig;

use super::channel::{self, Channel};
use super::message::{self, Message};
use super::outage::{self, Kind, Outage};
use super::topic;
use super::watchdog::Watchdog;
use crate::config::ProxyConfig;
use crate::genesys::client::GenesysClient;
use crate::genesys::error::ApiError;
use crate::model::{QueueChanged, SharedQueues};
use crate::stats::Stats;
use crate::time::now_ms;
use crate::websocket::dial::{self, Stream};
use crate::websocket::handshake::Refusal;
use crate::websocket::{WebSocket, WsError};

/// How long one read waits, so the thread notices a stop, a queue-list change and the
/// watchdog within this time.
const READ_SLICE: Duration = Duration::from_millis(200);
/// A socket that lived at least this long is reopened at once when lost; one that died
/// sooner counts as a failure (and waits), so a server that accepts and drops at once
/// cannot make the thread spin.
const HEALTHY_SOCKET: Duration = Duration::from_secs(10);
/// When a channel is replaced, the old socket is read until it has been quiet this long
/// (or [`MAX_DRAINED`] messages), then closed.
const DRAIN_WAIT: Duration = Duration::from_millis(20);
const MAX_DRAINED: usize = 10_000;
/// How often a thread with no queues to follow looks again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// What every channel thread shares.
#[derive(Clone)]
pub struct Shared {
    pub client: Arc<GenesysClient>,
    pub queues: SharedQueues,
    pub hints: Sender<QueueChanged>,
    pub stop: Receiver<()>,
    pub stats: Arc<Stats>,
    pub outage: Arc<Outage>,
    pub tls: Arc<ClientConfig>,
    /// The proxy variables, read as for every other request.
    pub proxies: ProxyConfig,
    /// `HTTP_TIMEOUT`: for each request and for opening a websocket.
    pub timeout: Duration,
}

/// A failed step and how to treat it.
#[derive(Debug)]
struct Failure {
    kind: Kind,
    what: String,
}

impl Failure {
    fn api(what: &str, error: &ApiError) -> Failure {
        let kind = if error.is_transient() {
            Kind::Transient
        } else {
            Kind::Lasting
        };
        Failure {
            kind,
            what: format!("{what}: {error}"),
        }
    }

    fn socket(channel: &Channel, error: &WsError) -> Failure {
        let lasting = match error {
            WsError::Refused(_) => true,
            // rustls reports certificate and handshake failures as invalid data.
            WsError::Io(e) => e.kind() == std::io::ErrorKind::InvalidData,
            WsError::Protocol(_) | WsError::Closed => false,
        };
        Failure {
            kind: if lasting {
                Kind::Lasting
            } else {
                Kind::Transient
            },
            what: format!(
                "websocket of channel {} at {}: {error}",
                channel.label(),
                channel.server()
            ),
        }
    }

    fn transient(what: String) -> Failure {
        Failure {
            kind: Kind::Transient,
            what,
        }
    }
}

/// A channel and its websocket, when open.
struct Live {
    channel: Channel,
    /// The queue ids its topics are subscribed for.
    followed: HashSet<Arc<str>>,
    socket: Option<WebSocket<Stream>>,
    opened: Instant,
}

impl Live {
    fn close(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            socket.close();
        }
    }
}

/// The thread of channel number `index` (0-based): follows queues `index × 1,000` to
/// `index × 1,000 + 999` of the sorted selection, until the stop channel disconnects.
pub fn run(index: usize, shared: Shared) {
    let mut worker = Worker {
        index,
        shared,
        current: None,
        next: None,
        watchdog: Watchdog::new(now_ms()),
        lost: false,
    };
    worker.run();
}

struct Worker {
    index: usize,
    shared: Shared,
    current: Option<Live>,
    /// The replacement being opened while `current` nears its expiry.
    next: Option<Live>,
    watchdog: Watchdog,
    /// A socket was lost: the next one opened counts as a reconnect.
    lost: bool,
}

impl Worker {
    fn run(&mut self) {
        let mut seen = None;
        let mut wanted = HashSet::new();
        let mut failures = 0u32;
        loop {
            let snapshot = self.shared.queues.snapshot();
            if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &snapshot)) {
                wanted = topic::slice(&snapshot, self.index);
                seen = Some(snapshot);
            }
            let wait = if wanted.is_empty() {
                self.close_all();
                Some(IDLE_CHECK)
            } else {
                match self.step(&wanted) {
                    Ok(()) => {
                        if failures > 0 {
                            self.shared.outage.recovered();
                        }
                        failures = 0;
                        None
                    }
                    Err(_) if self.stopping() => {
                        self.close_all();
                        return;
                    }
                    Err(failure) => {
                        failures = failures.saturating_add(1);
                        let wait = outage::delay(failure.kind, failures, crate::jitter::shared());
                        self.shared
                            .outage
                            .failed(failure.kind, failures, &failure.what, wait);
                        Some(wait)
                    }
                }
            };
            let stopped = match wait {
                Some(wait) => !matches!(
                    self.shared.stop.recv_timeout(wait),
                    Err(RecvTimeoutError::Timeout)
                ),
                None => matches!(
                    self.shared.stop.try_recv(),
                    Err(crossbeam_channel::TryRecvError::Disconnected) | Ok(())
                ),
            };
            if stopped {
                self.close_all();
                return;
            }
        }
    }

    /// The service is stopping: a connection lost now (the simulator of `demo` shut down
    /// with it, say) is no failure to report or retry.
    fn stopping(&self) -> bool {
        matches!(
            self.shared.stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    fn close_all(&mut self) {
        for live in [self.current.take(), self.next.take()].iter_mut().flatten() {
            live.close();
        }
    }

    /// One step towards a subscribed, connected channel, or one message read.
    fn step(&mut self, wanted: &HashSet<Arc<str>>) -> Result<(), Failure> {
        if self.current.is_none() {
            self.current = Some(self.open_channel()?);
        }
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        // A channel whose subscription failed is kept and subscribed again, not replaced.
        subscribe(&self.shared, current, wanted)?;
        if now_ms() >= current.channel.renew_at_ms() {
            return self.renew(wanted);
        }
        if current.socket.is_none() {
            return self.connect_current();
        }
        self.read()
    }

    /// Creates a channel (no topics yet, not connected).
    fn open_channel(&self) -> Result<Live, Failure> {
        let created = channel::create(&self.shared.client, self.deadline())
            .map_err(|e| Failure::api("creating a notification channel", &e))?;
        log::debug!(
            "notification channel {} created, expires {}",
            created.label(),
            crate::time::format_utc_ms(created.expires_ms)
        );
        Ok(Live {
            channel: created,
            followed: HashSet::new(),
            socket: None,
            opened: Instant::now(),
        })
    }

    /// Opens the replacement channel and its socket, then closes the old socket: both
    /// channels hear every change in between.
    fn renew(&mut self, wanted: &HashSet<Arc<str>>) -> Result<(), Failure> {
        let mut next = match self.next.take() {
            Some(next) => next,
            None => self.open_channel()?,
        };
        if let Err(failure) = subscribe(&self.shared, &mut next, wanted) {
            self.next = Some(next);
            return Err(failure);
        }
        if next.socket.is_none() {
            match self.connect(&next.channel) {
                Ok(socket) => next.socket = Some(socket),
                Err(error) => {
                    let failure = Failure::socket(&next.channel, &error);
                    self.next = Some(next);
                    return Err(failure);
                }
            }
        }
        if let Some(mut old) = self.current.replace(next) {
            log::debug!(
                "notification channel {} replaced before it expires",
                old.channel.label()
            );
            // What the old socket heard while the new one was being opened is not on the
            // new one: read it before closing.
            if let Some(socket) = old.socket.as_mut() {
                let _ = socket.get_ref().set_read_timeout(DRAIN_WAIT);
                for _ in 0..MAX_DRAINED {
                    let Ok(Some(text)) = socket.read_text() else {
                        break;
                    };
                    handle(
                        &self.shared,
                        &mut self.watchdog,
                        &old.followed,
                        &text,
                        now_ms(),
                    );
                }
            }
            old.close();
        }
        self.watchdog.connected(now_ms());
        Ok(())
    }

    fn connect_current(&mut self) -> Result<(), Failure> {
        let Some(current) = self.current.as_ref() else {
            return Ok(());
        };
        let channel = current.channel.clone();
        match self.connect(&channel) {
            Ok(socket) => {
                if std::mem::take(&mut self.lost) {
                    Stats::incr(&self.shared.stats.notification_reconnects);
                }
                if let Some(current) = self.current.as_mut() {
                    current.socket = Some(socket);
                    current.opened = Instant::now();
                }
                self.watchdog.connected(now_ms());
                Ok(())
            }
            // The server no longer knows the channel (expired, evicted): make a new one.
            Err(WsError::Refused(Refusal::Status(404 | 410))) => {
                let young = current.opened.elapsed() < HEALTHY_SOCKET;
                self.current = None;
                if young {
                    Err(Failure::transient(format!(
                        "the new notification channel {} is unknown to the websocket server",
                        channel.label()
                    )))
                } else {
                    log::info!(
                        "notification channel {} is gone (expired or evicted): creating a new one",
                        channel.label()
                    );
                    Ok(())
                }
            }
            Err(error) => Err(Failure::socket(&channel, &error)),
        }
    }

    fn connect(&self, channel: &Channel) -> Result<WebSocket<Stream>, WsError> {
        let socket = dial::connect(
            &channel.connect_uri,
            &self.shared.tls,
            &self.shared.proxies,
            self.shared.timeout,
        )?;
        socket.get_ref().set_read_timeout(READ_SLICE)?;
        Ok(socket)
    }

    /// Reads at most one message (or waits [`READ_SLICE`]) and acts on it.
    fn read(&mut self) -> Result<(), Failure> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        let Some(socket) = current.socket.as_mut() else {
            return Ok(());
        };
        let now = now_ms();
        let text = match socket.read_text() {
            Ok(Some(text)) => text,
            Ok(None) if self.watchdog.expired(now) => {
                let silence =
                    crate::duration::format(Duration::from_millis(self.watchdog.limit_ms()));
                return self.lose(format!(
                    "the notification websocket said nothing for {silence} (twice its heartbeat period)"
                ));
            }
            Ok(None) => return Ok(()),
            Err(error) => return self.lose(format!("the notification websocket failed: {error}")),
        };
        if handle(
            &self.shared,
            &mut self.watchdog,
            &current.followed,
            &text,
            now,
        ) == Heard::Closing
        {
            // Announced maintenance, not a failure: reopened at once, however young.
            let why = "the server announced it closes the notification websocket";
            return self.lose(why.into()).or(Ok(()));
        }
        Ok(())
    }

    /// The socket is gone: reopened at once if it had been healthy, else after a wait.
    fn lose(&mut self, why: String) -> Result<(), Failure> {
        let Some(current) = self.current.as_mut() else {
            return Ok(());
        };
        current.close();
        self.lost = true;
        if self.stopping() {
            return Ok(());
        }
        let Some(current) = self.current.as_ref() else {
            return Ok(());
        };
        if current.opened.elapsed() >= HEALTHY_SOCKET {
            log::info!("{why}: reconnecting");
            Ok(())
        } else {
            log::info!("{why}: reconnecting after a pause (the socket was young)");
            Err(Failure::transient(why))
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.shared.timeout
    }
}

/// Makes `live`'s topics those of `wanted` (one request, only when they differ).
fn subscribe(shared: &Shared, live: &mut Live, wanted: &HashSet<Arc<str>>) -> Result<(), Failure> {
    if live.followed == *wanted {
        return Ok(());
    }
    let deadline = Instant::now() + shared.timeout;
    channel::subscribe(&shared.client, &live.channel, wanted, deadline)
        .map_err(|e| Failure::api("subscribing the queues' topics", &e))?;
    log::debug!(
        "notification channel {} follows {} queues",
        live.channel.label(),
        wanted.len()
    );
    live.followed = wanted.clone();
    Ok(())
}

/// What a message meant for the socket it came on.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    Continue,
    /// `v2.system.socket_closing`.
    Closing,
}

/// Acts on one message of a socket whose channel follows `followed`: a hint for a
/// followed queue that changed (dropped when the poller is that far behind: its regular
/// poll reads the queue anyway), the heartbeat for the watchdog.
fn handle(
    shared: &Shared,
    watchdog: &mut Watchdog,
    followed: &HashSet<Arc<str>>,
    text: &str,
    now: u64,
) -> Heard {
    watchdog.message(now);
    match message::read(text, followed) {
        Message::QueueChanged(id) => {
            Stats::incr(&shared.stats.notifications_received);
            let hint = QueueChanged {
                queue_id: Arc::clone(id),
                at_ms: now,
            };
            if let Err(TrySendError::Full(_)) = shared.hints.try_send(hint) {
                log::debug!("notification hint dropped: the poller is busy");
            }
        }
        Message::Heartbeat => watchdog.heartbeat(now),
        Message::SocketClosing => return Heard::Closing,
        Message::Error(text) => log::warn!("the notification service refused a request: {text}"),
        Message::Pong | Message::Ignored => {}
    }
    Heard::Continue
}

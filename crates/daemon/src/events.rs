//! The event bus: every lifecycle change, progress step and error, numbered and kept in a
//! bounded ring so a client can catch up (`?since=SEQ`) and broadcast to live subscribers.
//!
//! Numbers are assigned and broadcast under one lock, so every subscriber sees events in
//! sequence order, and a subscription taken under that lock neither misses nor repeats one.
//! The broadcast channel holds a quarter of the ring: a subscriber that falls behind it is
//! refilled from the ring, and only when the ring no longer has what it missed does it get a
//! `resync` line.

use banger_api::event::{Event, EventKind};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many events the ring keeps.
pub const RING: usize = 1024;

pub struct EventBus {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Event>,
    /// The sequence number before this daemon run's first event.
    base: u64,
}

struct Ring {
    next: u64,
    events: VecDeque<Event>,
    capacity: usize,
}

impl EventBus {
    /// A bus whose first event is `base + 1` (the daemon passes its run id << 32, so numbers
    /// keep increasing across restarts).
    pub fn new(base: u64, capacity: usize) -> Arc<EventBus> {
        let (tx, _) = broadcast::channel((capacity / 4).max(1));
        Arc::new(EventBus { ring: Mutex::new(Ring { next: base + 1, events: VecDeque::new(), capacity }), tx, base })
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number, keep and broadcast one event; returns its sequence number.
    pub fn publish(&self, vm: Option<&str>, kind: EventKind) -> u64 {
        let mut ring = self.ring();
        let seq = ring.next;
        ring.next += 1;
        let event = Event { seq, time: crate::now_unix_f64(), vm: vm.map(Into::into), kind };
        tracing::debug!("event {seq}: {:?}", event.kind);
        if ring.events.len() == ring.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.tx.send(event);
        seq
    }

    /// The newest sequence number published (`base` when none yet).
    #[cfg(test)]
    pub fn last_seq(&self) -> u64 {
        self.ring().next - 1
    }

    /// The events after `since` the ring still holds (a `resync` first if some are gone).
    #[cfg(test)]
    pub fn since(&self, since: u64) -> Vec<Event> {
        let ring = self.ring();
        self.replay(&ring, since, None).into()
    }

    /// Events after `since` still in the ring, behind a `resync` line if some are gone (or for
    /// `force`, a reason the client's position means nothing here).
    fn replay(&self, ring: &Ring, since: u64, force: Option<String>) -> VecDeque<Event> {
        let oldest = ring.events.front().map(|e| e.seq).unwrap_or(ring.next);
        // `since = 0` asks for everything kept: only events of this run that are gone count.
        let first_wanted = if since == 0 { self.base + 1 } else { since.saturating_add(1) };
        let reason = force.or_else(|| {
            (first_wanted < oldest).then(|| {
                if since != 0 && since < self.base {
                    "bangerd restarted since that event; re-read the VMs".to_string()
                } else {
                    format!("more than {} events happened since {since}; re-read the VMs", ring.capacity)
                }
            })
        });
        let mut out = VecDeque::new();
        if let Some(reason) = reason {
            out.push_back(Event {
                seq: oldest - 1,
                time: crate::now_unix_f64(),
                vm: None,
                kind: EventKind::Resync { reason },
            });
        }
        out.extend(ring.events.iter().filter(|e| e.seq > since).cloned());
        out
    }

    /// Follow events from now on, or replay those after `since` first.
    pub fn subscribe(self: &Arc<Self>, since: Option<u64>) -> Subscription {
        let ring = self.ring();
        let rx = self.tx.subscribe();
        let last = ring.next - 1;
        let backlog = match since {
            None => VecDeque::new(),
            // A number this daemon never issued (another installation's, or a database that
            // was reset): everything kept, behind a resync.
            Some(s) if s > last => self.replay(
                &ring,
                0,
                Some(format!("{s} is not an event of this bangerd (its latest is {last}); re-read the VMs")),
            ),
            Some(s) => self.replay(&ring, s, None),
        };
        drop(ring);
        Subscription { bus: self.clone(), rx, backlog, last: since.filter(|&s| s <= last).unwrap_or(last) }
    }
}

/// One subscriber's view of the stream.
pub struct Subscription {
    bus: Arc<EventBus>,
    rx: broadcast::Receiver<Event>,
    backlog: VecDeque<Event>,
    /// The last sequence number handed out (later ones only from now on).
    last: u64,
}

impl Subscription {
    /// The next event, in order; `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.last = self.last.max(e.seq);
                return Some(e);
            }
            match self.rx.recv().await {
                Ok(e) if e.seq <= self.last => continue,
                Ok(e) => {
                    self.last = e.seq;
                    return Some(e);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let ring = self.bus.ring();
                    self.backlog = self.bus.replay(&ring, self.last, None);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(bus: &EventBus, vm: &str) -> u64 {
        bus.publish(Some(vm), EventKind::Created)
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn live_subscribers_get_every_event_in_order_and_late_ones_only_new_ones() {
        let bus = EventBus::new(0, 8);
        let mut early = bus.subscribe(None);
        assert_eq!(created(&bus, "a"), 1);
        let mut late = bus.subscribe(None);
        assert_eq!(created(&bus, "b"), 2);
        block(async {
            assert_eq!(early.next().await.unwrap().vm.as_deref(), Some("a"));
            assert_eq!(early.next().await.unwrap().seq, 2);
            assert_eq!(late.next().await.unwrap().seq, 2, "a late subscriber starts at the next event");
        });
    }

    #[test]
    fn since_replays_what_was_missed_and_says_when_the_ring_lost_some() {
        let bus = EventBus::new(0, 4);
        for i in 0..6 {
            created(&bus, &format!("vm{i}"));
        }
        // The ring holds 3..=6.
        let seqs = |mut s: Subscription, n: usize| {
            block(async move {
                let mut v = Vec::new();
                for _ in 0..n {
                    let e = s.next().await.unwrap();
                    v.push((e.seq, e.kind_name()));
                }
                v
            })
        };
        assert_eq!(seqs(bus.subscribe(Some(4)), 2), [(5, "created"), (6, "created")]);
        assert_eq!(seqs(bus.subscribe(Some(2)), 4), [(3, "created"), (4, "created"), (5, "created"), (6, "created")]);
        assert_eq!(seqs(bus.subscribe(Some(1)), 3), [(2, "resync"), (3, "created"), (4, "created")]);
        assert_eq!(seqs(bus.subscribe(Some(0)), 2), [(2, "resync"), (3, "created")], "0: all kept, and the loss");
        // Nothing newer than since: only live events follow.
        let mut s = bus.subscribe(Some(6));
        created(&bus, "x");
        assert_eq!(block(s.next()).unwrap().seq, 7);
    }

    #[test]
    fn a_client_of_an_earlier_daemon_run_is_told_to_resync() {
        let bus = EventBus::new(3 << 32, 16);
        let first = created(&bus, "a");
        assert_eq!(first, (3 << 32) + 1);
        let mut s = bus.subscribe(Some((2 << 32) + 40));
        let e = block(s.next()).unwrap();
        assert!(matches!(&e.kind, EventKind::Resync { reason } if reason.contains("restarted")), "{e:?}");
        assert_eq!(block(s.next()).unwrap().seq, first);
        // 0 means "all you keep": nothing of this run is lost, so no resync.
        assert_eq!(block(bus.subscribe(Some(0)).next()).unwrap().seq, first);
    }

    #[test]
    fn a_subscriber_that_lags_is_refilled_from_the_ring_and_told_only_when_the_ring_lost_some() {
        // The channel holds 2, the ring 8.
        let bus = EventBus::new(0, 8);
        let next_n = |s: &mut Subscription, n: usize| -> Vec<u64> {
            block(async {
                let mut v = Vec::new();
                for _ in 0..n {
                    v.push(s.next().await.unwrap().seq);
                }
                v
            })
        };
        let mut s = bus.subscribe(None);
        for i in 0..6 {
            created(&bus, &format!("vm{i}"));
        }
        assert_eq!(next_n(&mut s, 6), [1, 2, 3, 4, 5, 6], "refilled from the ring: no gap, no repeat");
        // Now it falls behind by more than the ring keeps: told so, then what is kept.
        for i in 0..12 {
            created(&bus, &format!("vm{i}"));
        }
        assert_eq!(next_n(&mut s, 9), [10, 11, 12, 13, 14, 15, 16, 17, 18]);
        let mut t = bus.subscribe(Some(6));
        let first = block(t.next()).unwrap();
        assert_eq!((first.seq, first.kind_name()), (10, "resync"));
    }

    #[test]
    fn a_position_this_daemon_never_issued_gets_a_resync_then_everything_kept() {
        let bus = EventBus::new(0, 8);
        created(&bus, "a");
        let mut s = bus.subscribe(Some(99));
        let e = block(s.next()).unwrap();
        assert!(matches!(&e.kind, EventKind::Resync { reason } if reason.contains("99 is not an event")), "{e:?}");
        assert_eq!(block(s.next()).unwrap().seq, 1);
        created(&bus, "b");
        assert_eq!(block(s.next()).unwrap().seq, 2);
    }
}

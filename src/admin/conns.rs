//! Which admin connection gives way when the listener is full.
//!
//! The admin port serves at most [`OpenConns::max`] connections. One accepted beyond
//! that closes the oldest connection of the peer address holding the most (the
//! newcomer's own when it is among them): a client flooding the port with connections,
//! held or churned, evicts its own, while a probe or a scraper from another address keeps
//! its connection through its request. Peers sharing an address (everything on one
//! host's loopback) are one peer: there a flood can still make a probe reconnect.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use tokio::task::AbortHandle;

/// The open connections' tasks, by peer address, oldest first.
pub(super) struct OpenConns {
    by_peer: HashMap<IpAddr, VecDeque<AbortHandle>>,
    max: usize,
}

impl OpenConns {
    pub(super) fn new(max: usize) -> OpenConns {
        OpenConns {
            by_peer: HashMap::new(),
            max,
        }
    }

    /// Makes room for one more connection from `peer`: forgets finished connections and,
    /// when full, aborts (closes) the oldest connection of the busiest peer.
    pub(super) fn make_room(&mut self, peer: IpAddr) {
        self.by_peer.retain(|_, conns| {
            conns.retain(|c| !c.is_finished());
            !conns.is_empty()
        });
        if self.open() < self.max {
            return;
        }
        let own = self.by_peer.get(&peer).map_or(0, VecDeque::len);
        let busiest = self
            .by_peer
            .iter()
            .max_by_key(|(_, conns)| conns.len())
            .map(|(ip, conns)| (*ip, conns.len()));
        let victim = match busiest {
            Some((ip, n)) if n > own => ip,
            _ => peer,
        };
        if let Some(oldest) = self.by_peer.get_mut(&victim).and_then(VecDeque::pop_front) {
            oldest.abort(); // its socket closes as the task is dropped
        }
    }

    /// Records the task serving a connection from `peer`.
    pub(super) fn add(&mut self, peer: IpAddr, conn: AbortHandle) {
        self.by_peer.entry(peer).or_default().push_back(conn);
    }

    /// Connections recorded and not finished (as of the last [`make_room`]).
    ///
    /// [`make_room`]: OpenConns::make_room
    pub(super) fn open(&self) -> usize {
        self.by_peer.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::OpenConns;
    use std::net::IpAddr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test]
    async fn the_busiest_peer_gives_way_oldest_first() {
        let mut conns = OpenConns::new(4);
        let spawn = |conns: &mut OpenConns, peer| {
            conns.make_room(peer);
            let task = tokio::spawn(std::future::pending::<()>());
            conns.add(peer, task.abort_handle());
            task
        };
        let probe = spawn(&mut conns, ip(2));
        let flood: Vec<_> = (0..3).map(|_| spawn(&mut conns, ip(1))).collect();
        // Full: the flood's next connection evicts the flood's oldest, not the probe.
        let _more = spawn(&mut conns, ip(1));
        tokio::task::yield_now().await;
        assert!(flood[0].is_finished());
        assert!(!probe.is_finished());
        // A new peer is served too, again at the flood's expense.
        let other = spawn(&mut conns, ip(3));
        tokio::task::yield_now().await;
        assert!(flood[1].is_finished());
        assert!(!probe.is_finished() && !other.is_finished());
        assert_eq!(conns.open(), 4);
    }

    #[tokio::test]
    async fn a_peer_as_busy_as_the_busiest_evicts_its_own() {
        let mut conns = OpenConns::new(2);
        conns.make_room(ip(1));
        let a = tokio::spawn(std::future::pending::<()>());
        conns.add(ip(1), a.abort_handle());
        conns.make_room(ip(2));
        let b = tokio::spawn(std::future::pending::<()>());
        conns.add(ip(2), b.abort_handle());
        conns.make_room(ip(2));
        tokio::task::yield_now().await;
        assert!(b.is_finished(), "ties go against the newcomer's own peer");
        assert!(!a.is_finished());
    }
}

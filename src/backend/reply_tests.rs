//! The reply channel's promises: a oneshot's semantics, reuse only of slots nobody else
//! holds, and no lost, doubled or misdelivered reply when both ends race on threads.

use super::*;
use crate::backend::LinkError;
use bytes::Bytes;

fn ok(n: u64) -> ReplyResult {
    Ok(Bytes::from(n.to_string()))
}

#[test]
fn a_sent_reply_is_received_once() {
    let (tx, mut rx) = channel();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.send(ok(7)).unwrap();
    assert_eq!(rx.try_recv(), Ok(ok(7)));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn a_sender_dropped_unsent_is_an_error() {
    let (tx, mut rx) = channel();
    drop(tx);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn a_closed_or_dropped_receiver_gives_the_value_back() {
    let (tx, mut rx) = channel();
    rx.close();
    assert!(tx.is_closed());
    assert_eq!(tx.send(ok(1)), Err(ok(1)));
    let (tx, rx) = channel();
    drop(rx);
    assert_eq!(
        tx.send(Err(LinkError::Lost("x".into()))),
        Err(Err(LinkError::Lost("x".into())))
    );
}

#[test]
fn close_keeps_a_reply_already_sent() {
    let (tx, mut rx) = channel();
    tx.send(ok(3)).unwrap();
    rx.close();
    assert_eq!(rx.try_recv(), Ok(ok(3)));
}

#[tokio::test]
async fn awaiting_wakes_on_send_and_on_drop() {
    let (tx, rx) = channel();
    let h = tokio::spawn(rx);
    tokio::task::yield_now().await;
    tx.send(ok(5)).unwrap();
    assert_eq!(h.await.unwrap(), Ok(ok(5)));
    let (tx, rx) = channel();
    let h = tokio::spawn(rx);
    tokio::task::yield_now().await;
    drop(tx);
    assert_eq!(h.await.unwrap(), Err(RecvError));
}

#[test]
fn a_slot_is_reused_only_once_its_sender_is_gone() {
    let mut slots = Slots::default();
    let (tx, mut rx) = slots.channel();
    tx.send(ok(1)).unwrap();
    assert_eq!(rx.try_recv(), Ok(ok(1)));
    slots.recycle(rx);
    assert_eq!(slots.len(), 1);
    // The reused slot starts empty and works as new.
    let (tx, mut rx) = slots.channel();
    assert!(slots.is_empty());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    // Recycled while its sender still holds it: not reused, and the late send fails.
    slots.recycle(rx);
    assert!(slots.is_empty());
    assert_eq!(tx.send(ok(2)), Err(ok(2)));
    // A reply sent and never taken goes with the reset.
    let (tx, rx) = slots.channel();
    tx.send(ok(3)).unwrap();
    slots.recycle(rx);
    let (_tx, mut rx) = slots.channel();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn the_pool_keeps_a_bounded_number() {
    let mut slots = Slots::default();
    let chans: Vec<_> = (0..KEEP + 10).map(|_| slots.channel()).collect();
    for (tx, rx) in chans {
        drop(tx);
        slots.recycle(rx);
    }
    assert_eq!(slots.len(), KEEP);
}

/// Links on other threads answer, drop unsent, or answer after the session closed or
/// dropped its end, while the session reuses slots: each reply reaches exactly the
/// request it was sent for, or none.
#[test]
fn threads_racing_never_misdeliver() {
    use std::sync::mpsc;
    const N: u64 = 40_000;
    let (to_link, links_in) = mpsc::channel::<(u64, ReplyTx)>();
    let links_in = Arc::new(std::sync::Mutex::new(links_in));
    let links: Vec<_> = (0..3)
        .map(|_| {
            let links_in = links_in.clone();
            std::thread::spawn(move || loop {
                let next = links_in.lock().unwrap().recv();
                let Ok((id, tx)) = next else { return };
                match id % 7 {
                    0 => drop(tx),
                    _ => {
                        let _ = tx.send(ok(id));
                    }
                }
            })
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut slots = Slots::default();
        let mut waiting = std::collections::VecDeque::new();
        for id in 0..N {
            let (tx, rx) = slots.channel();
            to_link.send((id, tx)).unwrap();
            waiting.push_back((id, rx));
            if waiting.len() >= 16 {
                let (id, mut rx) = waiting.pop_front().unwrap();
                match id % 5 {
                    // The session goes on without this reply (client gone).
                    0 => {
                        rx.close();
                        if let Ok(r) = rx.try_recv() {
                            assert_eq!(r, ok(id));
                        }
                    }
                    _ => match (&mut rx).await {
                        Ok(r) => assert_eq!(r, ok(id)),
                        Err(RecvError) => assert_eq!(id % 7, 0),
                    },
                }
                slots.recycle(rx);
            }
        }
        drop(to_link);
        for (id, rx) in waiting {
            match rx.await {
                Ok(r) => assert_eq!(r, ok(id)),
                Err(RecvError) => assert_eq!(id % 7, 0),
            }
        }
    });
    for l in links {
        l.join().unwrap();
    }
}

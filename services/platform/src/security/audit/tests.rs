use super::*;
use crate::merkle::Frontier;
use chrono::DateTime;

const SERVICE: &str = "verivali";

fn entry(id: i64) -> Entry {
    Entry {
        id,
        at: DateTime::from_timestamp_micros(1_790_000_000_000_000 + id).expect("time"),
        actor: format!("officer-{}", id % 3),
        role: "regency_officer".into(),
        action: "verivali.GetCase".into(),
        records: vec![format!("case-{id}")],
        request_id: format!("trace-{id}"),
    }
}

fn signer() -> Signer {
    Signer::from_seed(SERVICE, &[7; 32]).expect("a key")
}

/// A log of `n` entries sequenced in rounds of 3, each round signing a head.
fn log(n: i64) -> Log {
    let signer = signer();
    let mut frontier = Frontier::default();
    let mut log = Log {
        service: SERVICE.into(),
        ..Log::default()
    };
    for id in 1..=n {
        let e = entry(id);
        let h = leaf_hash(&e);
        log.leaves.push(Leaf {
            index: id - 1,
            leaf_hash: h.to_vec(),
            entry: Some(e),
        });
        frontier.push(h);
        if id % 3 == 0 || id == n {
            let at = entry(id).at;
            let root = frontier.root();
            log.heads.push(Head {
                size: frontier.size,
                root,
                at,
                public_key: signer.public_key().to_vec(),
                signature: signer.sign(frontier.size, &root, at),
            });
        }
    }
    log
}

#[test]
fn an_intact_log_verifies_against_its_key_and_a_kept_checkpoint() {
    let log = log(7);
    let key = signer().public_key().to_vec();
    let kept = (log.heads[0].size, log.heads[0].root);
    let verified = verify(&log, Some(&key), Some(kept)).expect("intact");
    assert_eq!(verified.leaves, 7);
    assert_eq!(verified.head.map(|h| h.size), Some(7));
    assert_eq!(verify(&Log::default(), None, None).map(|v| v.leaves), Ok(0));
    let other = Signer::from_seed(SERVICE, &[8; 32]).expect("a key");
    assert_eq!(
        verify(&log, Some(other.public_key()), None),
        Err(Break::BadSignature { size: 3 })
    );
}

#[test]
fn every_kind_of_tampering_is_found() {
    let intact = log(9);
    // Changed: one field of one entry.
    let mut changed = intact.clone();
    changed.leaves[4].entry.as_mut().expect("entry").records = vec!["case-999".into()];
    assert_eq!(
        verify(&changed, None, None),
        Err(Break::Altered { index: 4 })
    );
    // Changed and its leaf re-hashed: the heads over it no longer hold.
    let mut rehashed = intact.clone();
    rehashed.leaves[4].entry.as_mut().expect("entry").actor = "someone-else".into();
    rehashed.leaves[4].leaf_hash =
        leaf_hash(rehashed.leaves[4].entry.as_ref().expect("entry")).to_vec();
    assert_eq!(
        verify(&rehashed, None, None),
        Err(Break::HeadMismatch { size: 6 })
    );
    // Removed from the middle, and removed with the rest renumbered.
    let mut removed = intact.clone();
    removed.leaves.remove(3);
    assert_eq!(
        verify(&removed, None, None),
        Err(Break::Missing {
            expected: 3,
            found: 4
        })
    );
    for leaf in removed.leaves.iter_mut().skip(3) {
        leaf.index -= 1;
    }
    assert_eq!(
        verify(&removed, None, None),
        Err(Break::HeadMismatch { size: 6 })
    );
    // Reordered.
    let mut reordered = intact.clone();
    let (a, b) = (reordered.leaves[1].clone(), reordered.leaves[2].clone());
    reordered.leaves[1] = Leaf { index: 1, ..b };
    reordered.leaves[2] = Leaf { index: 2, ..a };
    assert_eq!(
        verify(&reordered, None, None),
        Err(Break::HeadMismatch { size: 3 })
    );
    // Inserted in the middle with a correct leaf hash, and at the end.
    let mut inserted = intact.clone();
    let e = entry(100);
    inserted.leaves.insert(
        5,
        Leaf {
            index: 5,
            leaf_hash: leaf_hash(&e).to_vec(),
            entry: Some(e.clone()),
        },
    );
    for leaf in inserted.leaves.iter_mut().skip(6) {
        leaf.index += 1;
    }
    assert_eq!(
        verify(&inserted, None, None),
        Err(Break::HeadMismatch { size: 6 })
    );
    let mut appended = intact.clone();
    appended.leaves.push(Leaf {
        index: 9,
        leaf_hash: leaf_hash(&e).to_vec(),
        entry: Some(e),
    });
    assert_eq!(
        verify(&appended, None, None),
        Err(Break::Unsigned { index: 9 })
    );
    // A forged head: a root its key did not sign.
    let mut forged = intact.clone();
    forged.heads[1].root = [1; 32];
    assert_eq!(
        verify(&forged, None, None),
        Err(Break::BadSignature { size: 6 })
    );
    // History cut and re-signed by someone holding the key: the kept checkpoint
    // finds it, as it finds a log cut short.
    let kept = (intact.heads[2].size, intact.heads[2].root);
    let mut rewritten = log(8);
    rewritten.leaves[7].entry.as_mut().expect("entry").action = "x".into();
    let rewritten = {
        let mut again = Log {
            service: SERVICE.into(),
            ..Log::default()
        };
        let signer = signer();
        let mut frontier = Frontier::default();
        for leaf in rewritten.leaves.iter().take(8) {
            let h = leaf_hash(leaf.entry.as_ref().expect("entry"));
            frontier.push(h);
            again.leaves.push(Leaf {
                leaf_hash: h.to_vec(),
                ..leaf.clone()
            });
        }
        let more = entry(50);
        let h = leaf_hash(&more);
        frontier.push(h);
        again.leaves.push(Leaf {
            index: 8,
            leaf_hash: h.to_vec(),
            entry: Some(more),
        });
        let (root, at) = (frontier.root(), entry(9).at);
        again.heads.push(Head {
            size: 9,
            root,
            at,
            public_key: signer.public_key().to_vec(),
            signature: signer.sign(9, &root, at),
        });
        again
    };
    assert!(verify(&rewritten, None, None).is_ok());
    assert_eq!(
        verify(&rewritten, None, Some(kept)),
        Err(Break::Inconsistent { size: 9 })
    );
    let mut cut = intact.clone();
    cut.leaves.truncate(6);
    cut.heads.truncate(2);
    assert!(verify(&cut, None, None).is_ok());
    assert_eq!(
        verify(&cut, None, Some(kept)),
        Err(Break::Truncated { size: 6, head: 9 })
    );
    // An entry taken out of the queue before it was sequenced.
    let mut dropped = intact;
    dropped.dropped.push(12);
    assert_eq!(verify(&dropped, None, None), Err(Break::Dropped { id: 12 }));
}

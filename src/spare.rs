//! Spares: room an ended connection or exchange leaves, kept per thread
//! for the next one there, so that the next allocates none of its own.
//!
//! Each kind of spare has its own thread-local list (declared with
//! [`std::thread_local!`] as a `Cell<Vec<T>>`, `const`-initialised empty);
//! [`take`] and [`give`] work on it. A list holds at most the bound its
//! [`give`] is called with, and what goes in must hold nothing of the
//! requests it served (the caller clears it first).

use std::cell::Cell;
use std::thread::LocalKey;

/// The list a kind of spare is kept in.
pub type Spares<T> = LocalKey<Cell<Vec<T>>>;

/// A spare of this thread, if any.
pub fn take<T: 'static>(spares: &'static Spares<T>) -> Option<T> {
    spares
        .try_with(|list| {
            let mut kept = list.take();
            let spare = kept.pop();
            list.set(kept);
            spare
        })
        .ok()
        .flatten()
}

/// Keeps `spare` for the thread's next taker, unless `max` are kept already.
/// At the thread's end nothing is kept: the spare goes.
pub fn give<T: 'static>(spares: &'static Spares<T>, spare: T, max: usize) {
    let _ = spares.try_with(|list| {
        let mut kept = list.take();
        if kept.len() < max {
            kept.push(spare);
        }
        list.set(kept);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    std::thread_local! {
        static NUMBERS: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    }

    #[test]
    fn spares_come_back_last_first_and_stay_bounded() {
        assert_eq!(take(&NUMBERS), None);
        for n in 0..5 {
            give(&NUMBERS, n, 3);
        }
        assert_eq!(
            take(&NUMBERS),
            Some(2),
            "the fourth and fifth were not kept"
        );
        assert_eq!(take(&NUMBERS), Some(1));
        assert_eq!(take(&NUMBERS), Some(0));
        assert_eq!(take(&NUMBERS), None);
    }

    #[test]
    fn spares_are_per_thread() {
        give(&NUMBERS, 7, 3);
        let other = std::thread::spawn(|| take(&NUMBERS))
            .join()
            .expect("the other thread ends");
        assert_eq!(other, None, "another thread has its own list");
        assert_eq!(take(&NUMBERS), Some(7));
    }
}

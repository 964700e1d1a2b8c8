//! Reserve-then-commit: every table an operation needs is allocated before the first live
//! entry is touched. Reserved pages are chained through their own first word, so the
//! engine needs no memory of its own for any number of them.

use crate::error::Error;
use crate::hw::{Hardware, PhysAddr};
use crate::table::PageTable;

const END: u64 = u64::MAX;

/// Pages allocated for an operation and not yet used.
#[must_use]
pub(crate) struct Reservation {
    head: u64,
    count: u64,
}

impl Reservation {
    pub(crate) const EMPTY: Reservation = Reservation {
        head: END,
        count: 0,
    };
}

impl<H: Hardware> PageTable<H> {
    /// Allocates `count` table pages, or none.
    ///
    /// # Errors
    /// [`Error::OutOfTables`] if the hardware runs out; the pages already taken are given
    /// back.
    pub(crate) fn reserve(&mut self, count: u64) -> Result<Reservation, Error> {
        let mut reservation = Reservation::EMPTY;
        for _ in 0..count {
            let Some(page) = self.hw.alloc_table() else {
                self.release(reservation);
                return Err(Error::OutOfTables);
            };
            self.counters.tables_allocated += 1;
            // SAFETY: the page was just allocated for us and is not reachable by any walk;
            // its first word is free for the link until the page is filled.
            unsafe { self.hw.table_ptr(page).as_ptr().write(reservation.head) };
            reservation.head = page.0;
            reservation.count += 1;
        }
        Ok(reservation)
    }

    /// Takes one reserved page.
    ///
    /// # Errors
    /// [`Error::Internal`] if the plan reserved too few (a bug).
    pub(crate) fn take(&mut self, reservation: &mut Reservation) -> Result<PhysAddr, Error> {
        if reservation.head == END {
            return Err(Error::Internal);
        }
        let page = PhysAddr(reservation.head);
        // SAFETY: reserved pages are ours and hold the link in their first word.
        reservation.head = unsafe { self.hw.table_ptr(page).as_ptr().read() };
        reservation.count -= 1;
        Ok(page)
    }

    /// Gives back the pages not used.
    pub(crate) fn release(&mut self, mut reservation: Reservation) {
        while let Ok(page) = self.take(&mut reservation) {
            self.hw.free_table(page);
            self.counters.tables_freed += 1;
        }
    }
}

//! Whose console input it is. Typed characters go to the guest (or the hypervisor) that
//! has focus; Ctrl-a three times in a row moves focus on: guest 1, guest 2, ..., the
//! hypervisor, guest 1 again (Xen's switch, with the same key), passing over guests that
//! have ended. Ctrl-a's that do not make
//! a run of three are handed on as typed, so a guest still receives a lone Ctrl-a (a
//! shell's beginning-of-line). Portable.

use arrayvec::ArrayVec;

/// Ctrl-a.
pub const SWITCH_KEY: u8 = 0x01;
/// How many in a row switch.
const SWITCH_RUN: u8 = 3;

/// Who receives input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Hypervisor,
    /// Guest number (1 for the first).
    Guest(u16),
}

/// What one typed character turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// Deliver this byte to whoever has focus.
    Byte(Focus, u8),
    /// Focus moved here.
    Switched(Focus),
}

/// The focus and the Ctrl-a run being typed.
pub struct InputFocus {
    focus: Focus,
    guests: u16,
    switch_run: u8,
}

impl InputFocus {
    /// With `guests` guests, focus on the first (the hypervisor if there is none).
    pub const fn new(guests: u16) -> Self {
        Self {
            focus: if guests == 0 {
                Focus::Hypervisor
            } else {
                Focus::Guest(1)
            },
            guests,
            switch_run: 0,
        }
    }

    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// One typed character: at most [`SWITCH_RUN`] deliveries (held-back Ctrl-a's and the
    /// byte), or a switch.
    pub fn take(&mut self, byte: u8) -> ArrayVec<Routed, 3> {
        self.take_among(byte, &|_| true)
    }

    /// [`Self::take`], a switch passing over the guests `alive` says have ended.
    pub fn take_among(&mut self, byte: u8, alive: &dyn Fn(u16) -> bool) -> ArrayVec<Routed, 3> {
        let mut out = ArrayVec::new();
        if byte == SWITCH_KEY {
            self.switch_run += 1;
            if self.switch_run == SWITCH_RUN {
                self.switch_run = 0;
                self.focus = self.next_among(alive);
                out.push(Routed::Switched(self.focus));
            }
            return out;
        }
        for _ in 0..core::mem::take(&mut self.switch_run) {
            out.push(Routed::Byte(self.focus, SWITCH_KEY));
        }
        out.push(Routed::Byte(self.focus, byte));
        out
    }

    /// The next focus in the cycle whose guest is alive (the hypervisor always is).
    fn next_among(&self, alive: &dyn Fn(u16) -> bool) -> Focus {
        let mut candidate = self.next_after(self.focus);
        // At most one lap: guests and the hypervisor.
        for _ in 0..=self.guests {
            match candidate {
                Focus::Guest(n) if !alive(n) => candidate = self.next_after(candidate),
                _ => break,
            }
        }
        candidate
    }

    fn next_after(&self, focus: Focus) -> Focus {
        match focus {
            Focus::Guest(n) if n < self.guests => Focus::Guest(n + 1),
            Focus::Guest(_) => Focus::Hypervisor,
            Focus::Hypervisor if self.guests > 0 => Focus::Guest(1),
            Focus::Hypervisor => Focus::Hypervisor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(focus: &mut InputFocus, bytes: &[u8]) -> alloc::vec::Vec<Routed> {
        bytes.iter().flat_map(|&b| focus.take(b)).collect()
    }

    #[test]
    fn three_ctrl_a_cycle_through_guests_and_the_hypervisor() {
        let mut f = InputFocus::new(2);
        assert_eq!(f.focus(), Focus::Guest(1));
        assert_eq!(
            typed(&mut f, &[1, 1, 1]),
            [Routed::Switched(Focus::Guest(2))]
        );
        assert_eq!(
            typed(&mut f, &[1, 1, 1]),
            [Routed::Switched(Focus::Hypervisor)]
        );
        assert_eq!(
            typed(&mut f, &[1, 1, 1]),
            [Routed::Switched(Focus::Guest(1))]
        );
    }

    #[test]
    fn a_switch_passes_over_guests_that_ended() {
        let mut f = InputFocus::new(3);
        let alive = |n: u16| n != 2;
        let switch = |f: &mut InputFocus| {
            [1u8, 1, 1]
                .iter()
                .flat_map(|&b| f.take_among(b, &alive))
                .collect::<alloc::vec::Vec<_>>()
        };
        assert_eq!(switch(&mut f), [Routed::Switched(Focus::Guest(3))]);
        assert_eq!(switch(&mut f), [Routed::Switched(Focus::Hypervisor)]);
        assert_eq!(switch(&mut f), [Routed::Switched(Focus::Guest(1))]);
        // Every guest ended: the hypervisor keeps focus.
        let mut none = InputFocus::new(2);
        let dead = |_: u16| false;
        let routed: alloc::vec::Vec<_> = [1u8, 1, 1]
            .iter()
            .flat_map(|&b| none.take_among(b, &dead))
            .collect();
        assert_eq!(routed, [Routed::Switched(Focus::Hypervisor)]);
    }

    #[test]
    fn a_short_run_of_ctrl_a_is_handed_on() {
        let mut f = InputFocus::new(1);
        assert_eq!(
            typed(&mut f, &[1, 1, b'x']),
            [
                Routed::Byte(Focus::Guest(1), 1),
                Routed::Byte(Focus::Guest(1), 1),
                Routed::Byte(Focus::Guest(1), b'x')
            ]
        );
        assert_eq!(typed(&mut f, b"a"), [Routed::Byte(Focus::Guest(1), b'a')]);
    }

    #[test]
    fn no_guest_means_the_hypervisor_keeps_focus() {
        let mut f = InputFocus::new(0);
        assert_eq!(
            typed(&mut f, &[1, 1, 1]),
            [Routed::Switched(Focus::Hypervisor)]
        );
        assert_eq!(typed(&mut f, b"q"), [Routed::Byte(Focus::Hypervisor, b'q')]);
    }

    #[test]
    fn any_input_never_panics_and_focus_stays_valid() {
        let mut f = InputFocus::new(3);
        for byte in (0..=255u8).cycle().take(10_000) {
            let _ = f.take(byte);
            match f.focus() {
                Focus::Guest(n) => assert!((1..=3).contains(&n)),
                Focus::Hypervisor => {}
            }
        }
    }
}

//! The runtime: the tasks that follow the event log (projections, subscriptions) and the
//! delivery workers that drain the outbox. Live processing, restart recovery and replay all run
//! through the same consumer loop: read after the stored position, apply, commit the position.

pub mod consumer;
pub mod delivery;
pub mod inventory;
pub mod keyhash;
pub mod orders;
pub mod subscription;
pub mod webhook;

/// A small, fast pseudo-random source for retry jitter. Seeded from the clock at the edge; the
/// core only ever sees the number it produces.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    /// A number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

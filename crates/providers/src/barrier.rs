//! The stage barrier: a tier that holds calls back (batch) sends them once every keyed call
//! of a stage is stored; the synchronous tiers hold nothing back.

use std::fmt;

use async_trait::async_trait;

use crate::Result;

/// What a stage waits on before its calls can be answered.
///
/// A stage sends all its keyed calls at once; a tier that holds calls back until they are sent
/// together (batch) tells when every one of them is stored ([`StageBarrier::stored`]) and then
/// sends them ([`StageBarrier::flush`]). The synchronous tiers send each call at once: their
/// barrier ([`NoBarrier`]) is a no-op.
#[async_trait]
pub trait StageBarrier: Send + Sync + fmt::Debug {
    /// Whether calls wait for [`StageBarrier::flush`] (a batch tier) rather than going at once.
    fn holds_calls(&self) -> bool {
        false
    }

    /// Resolves once every call keyed by one of `keys` is stored by the tier and waits for
    /// the flush. A call that finished or failed before it was stored is never stored: the
    /// caller asks again without its key. Cancel-safe: dropping the future changes nothing.
    async fn stored(&self, keys: &[String]) -> Result<()> {
        let _ = keys;
        Ok(())
    }

    /// Sends every call stored so far (a batch tier may first wait briefly for other sessions'
    /// calls to join them: `BATCH_COALESCE_MS`).
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// The batches that carried the calls keyed by `keys`, each once, in first-seen order
    /// (none on a synchronous tier; calls not answered yet are left out).
    async fn batches(&self, keys: &[String]) -> Vec<String> {
        let _ = keys;
        Vec::new()
    }
}

/// The barrier of the synchronous tiers: every call is sent at once, nothing waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBarrier;

impl StageBarrier for NoBarrier {}
